/* The study: softmax and sigmoid attention trained alike, then compared. */
#ifndef ATTNSINK_CLI_STUDY_H
#define ATTNSINK_CLI_STUDY_H

int cmd_study(int argc, char **argv);

#endif

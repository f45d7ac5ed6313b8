/* The study: softmax and sigmoid attention trained alike, then compared. */
#ifndef ATTNSINK_CLI_STUDY_H
#define ATTNSINK_CLI_STUDY_H

/* The share of the budget the two runs train for (side by side); the rest covers
 * evening out their step counts, probing and the report. */
#define STUDY_TRAIN_SHARE 0.93

int cmd_study(int argc, char **argv);

#endif

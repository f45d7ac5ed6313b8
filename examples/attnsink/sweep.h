/* The sweep: a plan of training runs (a JSON file), run one process per run with one
 * thread each, as many at once as cores; resumable (finished runs are skipped, stopped
 * ones continue); a results JSON, a markdown table and Sink_1 and loss plots.
 * docs/cli.md documents the plan's format. */
#ifndef ATTNSINK_CLI_SWEEP_H
#define ATTNSINK_CLI_SWEEP_H

int cmd_sweep(int argc, char **argv);

#endif

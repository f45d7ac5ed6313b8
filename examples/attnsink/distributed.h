/* Data-parallel `attnsink train` over MPI (docs/cli.md "Training on several processes").
 *
 * Under mpirun every rank holds the whole model and draws the whole global batch from the
 * same seeded stream, trains its own contiguous share of the windows, and the ranks sum
 * their gradient blocks (asink_model_grad_block) before each AdamW step, so every rank
 * applies the same update and the weights stay identical without ever being sent. Rank 0
 * alone evaluates, probes, writes checkpoints and metrics and prints progress.
 *
 * Without mpirun (or in a build without MPI) every function here is the trivial one-process
 * case, so train.c calls them unconditionally. */
#ifndef ATTNSINK_CLI_DISTRIBUTED_H
#define ATTNSINK_CLI_DISTRIBUTED_H

#include <stdbool.h>
#include <stdint.h>

#include <attnsink.h>
#include <jansson.h>

#include "args.h"

/* Processes a launcher started for this job, read from its environment (Open MPI's
 * OMPI_COMM_WORLD_SIZE, PMI_SIZE of MPICH and Slurm); 1 when run alone. Needs no MPI. */
int dist_launched_ranks(void);

/* Joins the job when a launcher started several processes: MPI_Init, the rank's default
 * thread count (its share of the cores), stdout of ranks > 0 silenced, and the job's signal
 * handling (SIGTERM, which mpirun sends when a rank dies or the job is interrupted, ends
 * the rank at once with a message naming the last checkpoint; SIGUSR1, which mpirun
 * forwards, asks for a clean stop at the next step, as Ctrl-C does alone). Call after
 * train_install_signals. -1 after one error line (a build without MPI under mpirun). */
int dist_begin(void);
/* Leaves the job and returns rc: MPI_Finalize, or MPI_Abort when this rank fails alone (the
 * others cannot go on without it). Rank 0 prints how long the gradient sums took. */
int dist_end(int rc);

int dist_rank(void);
int dist_size(void);
bool dist_root(void);

/* Collective, once every rank has prepared (failed != 0: this rank could not). Fails on every
 * rank, with one message from rank 0, if a rank could not start, if the ranks were started
 * with different settings (settings: the run's as JSON, train_opts_json; the corpus's
 * content, the parameters, --allreduce), or if the global batch is not a multiple of the
 * rank count. Errors of every rank are held back from dist_hold_errors (called before
 * preparing) to here, so a mistake every rank makes is reported once. */
void dist_hold_errors(void);
int dist_agree_start(int failed, const cli_opts *o, const json_t *settings, uint64_t corpus_hash,
                     asink_model *m);

/* The windows [*first, *first + *count) of a global batch of B this rank trains. */
void dist_share(int B, int *first, int *count);

/* After backward: replaces this rank's gradient block by the mean-loss gradient of the
 * global batch, sum over ranks of (targets of rank r / all targets) x gradient of rank r,
 * and *loss by the global batch's mean loss. targets: the whole batch (B, T), which every
 * rank holds. mode "ordered": every element summed in rank order, 0 first (bit-identical
 * whatever the MPI library or network); "mpi": MPI_Allreduce with MPI_SUM (the MPI
 * library's order). -1 after an error line. */
int dist_reduce(asink_model *m, const char *mode, int B, int T, const int32_t *targets, float *loss);

/* Why the loop should stop; every rank must call dist_stop before each step with its own
 * reasons and gets the union of all ranks' (so they stop at the same step). */
enum { DIST_STOP_SIGNAL = 1, DIST_STOP_TIME = 2 };
int dist_stop(int local);

/* Brackets rank 0's checkpoint writes: a SIGTERM arriving meanwhile waits for the files to
 * be complete. dist_checkpoint_end records the step for the message of a stopped job. */
void dist_checkpoint_begin(void);
void dist_checkpoint_end(const char *dir, int64_t step);

#endif

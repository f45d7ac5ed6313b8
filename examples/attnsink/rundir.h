/* The layout of a training run's directory, built so that killing the program at
 * any instant leaves a run that resumes exactly:
 *
 *   DIR/step-000000000250.Ab3xYz/   one complete checkpoint: config.json,
 *                                   model.safetensors, optimizer.safetensors,
 *                                   train_state.json, metrics.jsonl
 *   DIR/current -> step-000000000250.Ab3xYz
 *   DIR/config.json -> current/config.json   (and the other four names alike)
 *
 * A save writes a new step directory, syncs it, then switches `current` with one
 * atomic rename; only then is the previous step directory removed. Whatever a
 * killed save left (a step directory `current` does not name, temporary names) is
 * removed on the next start. */
#ifndef ATTNSINK_CLI_RUNDIR_H
#define ATTNSINK_CLI_RUNDIR_H

#include <stdbool.h>
#include <stdint.h>

typedef enum {
  RUNDIR_NONE,    /* no checkpoint (maybe what a killed first save left) */
  RUNDIR_CURRENT, /* `current` names a complete checkpoint */
  RUNDIR_FLAT,    /* an older layout: the checkpoint files directly in DIR */
  RUNDIR_FOREIGN, /* DIR/current is something else than a link: not a run's */
} rundir_kind;

/* What dir holds; for RUNDIR_CURRENT and RUNDIR_FLAT *ckpt (malloc'd) is the
 * directory whose files make the checkpoint, else NULL. *partial tells whether
 * dir holds leftovers of an interrupted save (step directories, links,
 * temporaries). */
rundir_kind rundir_find(const char *dir, char **ckpt, bool *partial);

/* Removes every step directory but keep (NULL: all of them, and the links and
 * `current` with them) and every temporary a killed save can leave; with keep a
 * step directory, the top-level names become links again where a killed
 * conversion from the flat layout left files. -1 after an error line. */
int rundir_clean(const char *dir, const char *keep);

/* A new, empty step directory for a save at step (malloc'd path). NULL after an
 * error line. */
char *rundir_stage(const char *dir, int64_t step);

/* Makes the filled step directory stage the run's checkpoint: syncs it, points
 * the top-level names at current/, switches `current` to it atomically, syncs dir,
 * then removes old (the previous checkpoint's directory, NULL for none; a flat
 * checkpoint's files are replaced by the links). -1 after an error line; *switched
 * tells whether stage became the run's checkpoint all the same (a sync after the
 * switch failed) or was removed, leaving the previous one the run's. */
int rundir_commit(const char *dir, const char *stage, const char *old, bool *switched);

/* Removes one step directory (only the names a save writes). */
void rundir_remove_step(const char *step_dir);

/* Removes everything a run writes into dir, then dir itself if rmdir_too and it is
 * empty. */
void rundir_remove(const char *dir, bool rmdir_too);

#endif

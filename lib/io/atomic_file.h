/* Atomic whole-file writes: a checkpoint, config.json or optimizer state is either
 * the old file or the complete new one, never a torn mix, even if the process dies
 * or the machine loses power mid-save (temp file + fsync + rename + fsync of dir). */
#ifndef ASINK_IO_ATOMIC_FILE_H
#define ASINK_IO_ATOMIC_FILE_H

#include <stddef.h>
#include <stdio.h>

#include "attnsink.h"

/* Writes the file's content to f. Returns ASINK_OK, or an error status after setting
 * the message (asink_fail); write errors on f are also caught by the caller. */
typedef asink_status (*asink_write_fn)(FILE *f, void *ctx);

/* Writes path atomically: fn fills "path.tmp.<pid>" in the same directory, which is
 * flushed, fsynced and renamed over path, then the directory is fsynced. On any failure
 * the temp file is removed and an existing path is left untouched. The temp name is per
 * process, so two threads must not write the same path at once. Errors: ASINK_ERR_ARG
 * for NULL path/fn, ASINK_ERR_IO for OS failures (message names the file and errno text),
 * ASINK_ERR_NOMEM, or whatever fn returned. */
asink_status asink_atomic_write(const char *path, asink_write_fn fn, void *ctx);

/* asink_atomic_write with the content given as one buffer of len bytes (buf may be
 * NULL when len is 0). Same errors. */
asink_status asink_atomic_write_buffer(const char *path, const void *buf, size_t len);

/* mkdir that accepts an existing directory; ASINK_ERR_IO naming dir otherwise. */
asink_status asink_make_dir(const char *dir);

#endif

#include "rundir.h"

#include <dirent.h>
#include <errno.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "errors.h"
#include "files.h"

#define CURRENT "current"
#define STEP_PREFIX "step-"
enum { STEP_DIGITS = 12, STEP_SUFFIX = 6 };

/* The checkpoint's files: what a step directory holds and the links at the top. */
static const char *const ckpt_files[] = {"config.json",      "model.safetensors", "optimizer.safetensors",
                                         "train_state.json", "metrics.jsonl",     NULL};

/* "step-" + 12 digits + "." + 6 letters or digits: the only directories cleaning removes. */
static bool is_step_name(const char *name) {
  size_t p = strlen(STEP_PREFIX);
  if (strncmp(name, STEP_PREFIX, p) || strlen(name) != p + STEP_DIGITS + 1 + STEP_SUFFIX) return false;
  for (int i = 0; i < STEP_DIGITS; i++)
    if (name[p + i] < '0' || name[p + i] > '9') return false;
  if (name[p + STEP_DIGITS] != '.') return false;
  for (int i = 0; i < STEP_SUFFIX; i++) {
    char c = name[p + STEP_DIGITS + 1 + i];
    if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9'))) return false;
  }
  return true;
}

/* NAME.tmp.* for a checkpoint file or `current`: a write that did not finish. */
static bool is_temp_name(const char *name) {
  if (!strncmp(name, "." CURRENT ".tmp.", strlen("." CURRENT ".tmp."))) return true;
  for (int i = 0; ckpt_files[i]; i++) {
    size_t n = strlen(ckpt_files[i]);
    if (!strncmp(name, ckpt_files[i], n) && !strncmp(name + n, ".tmp.", 5)) return true;
  }
  return false;
}

static bool is_ckpt_file(const char *name) {
  for (int i = 0; ckpt_files[i]; i++)
    if (!strcmp(name, ckpt_files[i])) return true;
  return false;
}

/* The link target "current/NAME" of a top-level name. */
static char *link_target(const char *name) { return xasprintf(CURRENT "/%s", name); }

/* Whether path is a link whose text is want. */
static bool links_to(const char *path, const char *want) {
  char buf[256];
  ssize_t n = readlink(path, buf, sizeof buf - 1);
  if (n < 0) return false;
  buf[n] = 0;
  return !strcmp(buf, want);
}

rundir_kind rundir_find(const char *dir, char **ckpt, bool *partial) {
  *ckpt = NULL;
  *partial = false;
  char *cur = path_join(dir, CURRENT), target[256];
  ssize_t n = readlink(cur, target, sizeof target - 1);
  struct stat cb;
  bool foreign = n < 0 && lstat(cur, &cb) == 0;
  free(cur);
  if (foreign) return RUNDIR_FOREIGN;
  if (n > 0) {
    target[n] = 0;
    char *step = path_join(dir, target);
    if (is_step_name(target) && is_dir(step)) {
      *ckpt = step;
      return RUNDIR_CURRENT;
    }
    free(step);
    *partial = true;
  }
  /* the older layout: real files, not links, at the top */
  bool flat = false;
  for (int i = 0; ckpt_files[i]; i++) {
    char *p = path_join(dir, ckpt_files[i]);
    struct stat sb;
    if (lstat(p, &sb) == 0) {
      if (S_ISREG(sb.st_mode)) flat = true;
      else *partial = true;
    }
    free(p);
  }
  if (flat) {
    *ckpt = xstrdup(dir);
    return RUNDIR_FLAT;
  }
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));)
    if (is_step_name(e->d_name) || is_temp_name(e->d_name)) *partial = true;
  if (d) closedir(d);
  return RUNDIR_NONE;
}

/* Points path at target through a fresh temporary link and one rename. */
static int replace_link(const char *dir, const char *name, const char *target) {
  char *path = path_join(dir, name), *tmp = NULL;
  int rc = -1;
  for (int attempt = 0; attempt < 100 && !tmp; attempt++) {
    char suffix[STEP_SUFFIX + 1];
    random_suffix(suffix);
    char *t = xasprintf("%s/%s%s.tmp.%s", dir, strcmp(name, CURRENT) ? "" : ".", name, suffix);
    if (symlink(target, t) == 0) tmp = t;
    else {
      free(t);
      if (errno != EEXIST) break;
    }
  }
  if (!tmp) cli_error("%s: cannot create a link: %s", path, strerror(errno));
  else if (durable_rename(tmp, path) != 0) {
    cli_error("%s: cannot switch to %s: %s", path, target, strerror(errno));
    unlink(tmp);
  } else rc = 0;
  free(tmp), free(path);
  return rc;
}

/* The top-level links into current/; a regular file there (the flat layout) is
 * replaced only when flat_too. Returns how many were made, or -1 after an error
 * line. */
static int ensure_links(const char *dir, bool flat_too) {
  int made = 0;
  for (int i = 0; ckpt_files[i]; i++) {
    char *p = path_join(dir, ckpt_files[i]), *t = link_target(ckpt_files[i]);
    struct stat sb;
    bool regular = lstat(p, &sb) == 0 && S_ISREG(sb.st_mode);
    bool make = !links_to(p, t) && (flat_too || !regular);
    int rc = make ? replace_link(dir, ckpt_files[i], t) : 0;
    free(p), free(t);
    if (rc) return -1;
    made += make;
  }
  return made;
}

/* ensure_links(dir, true), then a sync of dir if that changed it. */
static int links_over_files(const char *dir) {
  int made = ensure_links(dir, true);
  if (made > 0 && sync_dir(dir) != 0) {
    cli_error("%s: cannot sync: %s", dir, strerror(errno));
    return -1;
  }
  return made < 0 ? -1 : 0;
}

void rundir_remove_step(const char *step_dir) {
  DIR *d = opendir(step_dir);
  for (struct dirent *e; d && (e = readdir(d));)
    if (is_ckpt_file(e->d_name) || is_temp_name(e->d_name)) unlinkat(dirfd(d), e->d_name, 0);
  if (d) closedir(d);
  rmdir(step_dir); /* fails harmlessly when something else is still there */
}

int rundir_clean(const char *dir, const char *keep) {
  const char *keep_name = keep ? strrchr(keep, '/') : NULL;
  keep_name = keep_name ? keep_name + 1 : keep;
  DIR *d = opendir(dir);
  for (struct dirent *e; d && (e = readdir(d));) {
    const char *name = e->d_name;
    char *p = path_join(dir, name);
    if (is_step_name(name) && !(keep_name && !strcmp(name, keep_name))) rundir_remove_step(p);
    else if (is_temp_name(name)) unlink(p);
    free(p);
  }
  if (d) closedir(d);
  /* a conversion from the flat layout killed midway left files where links belong */
  if (keep && strcmp(keep, dir)) return links_over_files(dir);
  if (keep) return 0;
  /* no checkpoint to keep: the links and `current` point nowhere */
  char *cur = path_join(dir, CURRENT);
  struct stat sb;
  if (lstat(cur, &sb) == 0 && S_ISLNK(sb.st_mode)) unlink(cur);
  free(cur);
  for (int i = 0; ckpt_files[i]; i++) {
    char *p = path_join(dir, ckpt_files[i]), *t = link_target(ckpt_files[i]);
    if (links_to(p, t)) unlink(p);
    free(p), free(t);
  }
  return 0;
}

void rundir_remove(const char *dir, bool rmdir_too) {
  (void)rundir_clean(dir, NULL);
  /* a flat checkpoint's files too */
  for (int i = 0; ckpt_files[i]; i++) {
    char *p = path_join(dir, ckpt_files[i]);
    unlink(p);
    free(p);
  }
  if (rmdir_too) rmdir(dir);
}

char *rundir_stage(const char *dir, int64_t step) {
  for (int attempt = 0; attempt < 100; attempt++) {
    char suffix[STEP_SUFFIX + 1];
    random_suffix(suffix);
    char *p = xasprintf("%s/" STEP_PREFIX "%0*" PRId64 ".%s", dir, STEP_DIGITS, step, suffix);
    if (mkdir(p, 0777) == 0) return p;
    int e = errno;
    free(p);
    if (e != EEXIST) {
      cli_error("%s: cannot create a checkpoint directory: %s", dir, strerror(e));
      return NULL;
    }
  }
  cli_error("%s: cannot find a free checkpoint directory name", dir);
  return NULL;
}

int rundir_commit(const char *dir, const char *stage, const char *old, bool *switched) {
  *switched = false;
  const char *name = strrchr(stage, '/');
  name = name ? name + 1 : stage;
  if (sync_dir(stage) != 0) {
    cli_error("%s: cannot sync: %s", stage, strerror(errno));
    rundir_remove_step(stage);
    return -1;
  }
  if (ensure_links(dir, false) < 0 || replace_link(dir, CURRENT, name)) {
    rundir_remove_step(stage);
    return -1;
  }
  /* from here on stage is the run's checkpoint, whatever fails */
  *switched = true;
  if (sync_dir(dir) != 0) {
    cli_error("%s: cannot sync: %s", dir, strerror(errno));
    return -1;
  }
  /* a flat checkpoint's files (or those a killed conversion left) become links now */
  if (links_over_files(dir)) return -1;
  if (old && strcmp(old, dir)) rundir_remove_step(old);
  return 0;
}

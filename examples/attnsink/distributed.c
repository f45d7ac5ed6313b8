#include "distributed.h"

#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "errors.h"

int dist_launched_ranks(void) {
  static const char *const vars[] = {"OMPI_COMM_WORLD_SIZE", "PMI_SIZE", NULL};
  for (int i = 0; vars[i]; i++) {
    const char *v = getenv(vars[i]);
    int n = v ? atoi(v) : 0;
    if (n > 0) return n;
  }
  return 1;
}

#ifndef ATTNSINK_MPI

/* ------------------------------------------------- a build without MPI */

int dist_begin(void) {
  int n = dist_launched_ranks();
  if (n > 1) {
    cli_error(
        "this attnsink was built without MPI, so the %d processes the launcher started would each "
        "train alone: install Open MPI (openmpi-bin, libopenmpi-dev) and configure with "
        "meson setup -Dmpi=enabled, or run one process",
        n);
    return -1;
  }
  return 0;
}
int dist_end(int rc) { return rc; }
int dist_rank(void) { return 0; }
int dist_size(void) { return 1; }
bool dist_root(void) { return true; }
void dist_hold_errors(void) {}
int dist_agree_start(int failed, const cli_opts *o, const json_t *settings, uint64_t corpus_hash,
                     asink_model *m) {
  (void)o, (void)settings, (void)corpus_hash, (void)m;
  return failed ? -1 : 0;
}
void dist_share(int B, int *first, int *count) { *first = 0, *count = B; }
int dist_reduce(asink_model *m, const char *mode, int B, int T, const int32_t *targets, float *loss) {
  (void)m, (void)mode, (void)B, (void)T, (void)targets, (void)loss;
  return 0;
}
int dist_stop(int local) { return local; }
void dist_checkpoint_begin(void) {}
void dist_checkpoint_end(const char *dir, int64_t step) { (void)dir, (void)step; }

#else

#include <mpi.h>
#include <sched.h>

/* Floats per piece of the ordered sum: its receive buffer holds one piece, and a piece's
 * exchange is large enough (4 MiB) that the per-message latency does not show. */
enum { PIECE = 1 << 20 };

static struct {
  bool on; /* MPI initialised: launched with more than one rank */
  int rank, size;
  bool agreed_failure; /* every rank failed together: finalize, no abort */
  double t_begin, t_wait, t_reduce; /* waiting for the slowest rank; the sums themselves */
  int64_t reduces;
  float *recv; /* PIECE floats */
  long kill_at; /* test hook: this rank dies (SIGKILL) at its kill_at-th reduction */
} job = {.size = 1};

int dist_rank(void) { return job.rank; }
int dist_size(void) { return job.size; }
bool dist_root(void) { return job.rank == 0; }

/* ------------------------------------------------------------- signals */

/* What a rank prints when mpirun ends the job; rebuilt (with SIGTERM blocked) after every
 * checkpoint, written by the handler with write(2), which is async-signal-safe. */
static char stop_msg[1024];
static size_t stop_len;
static volatile sig_atomic_t in_checkpoint, term_pending;
/* non-zero once every rank has failed together and rank 0 has said why: a SIGTERM from
 * mpirun (which ends the job at the first non-zero exit) then ends this rank silently */
static volatile sig_atomic_t quiet_exit;

static void set_stop_msg(const char *dir, int64_t step) {
  sigset_t term, old;
  sigemptyset(&term);
  sigaddset(&term, SIGTERM);
  sigprocmask(SIG_BLOCK, &term, &old);
  int n;
  if (job.rank == 0 && step >= 0)
    n = snprintf(stop_msg, sizeof stop_msg,
                 "attnsink: rank 0 of %d: stopped: mpirun ended the job (another rank failed or the job "
                 "was interrupted); the last checkpoint in %s is at step %lld; continue with: "
                 "mpirun ... attnsink train --out %s --resume\n",
                 job.size, dir, (long long)step, dir);
  else if (job.rank == 0)
    n = snprintf(stop_msg, sizeof stop_msg,
                 "attnsink: rank 0 of %d: stopped: mpirun ended the job (another rank failed or the job "
                 "was interrupted) before this run wrote its first checkpoint\n",
                 job.size);
  else
    n = snprintf(stop_msg, sizeof stop_msg,
                 "attnsink: rank %d of %d: stopped: mpirun ended the job (another rank failed or the job "
                 "was interrupted); --resume continues from the last checkpoint rank 0 wrote\n",
                 job.rank, job.size);
  stop_len = n > 0 && (size_t)n < sizeof stop_msg ? (size_t)n : strlen(stop_msg);
  sigprocmask(SIG_SETMASK, &old, NULL);
}

static void on_term(int sig) {
  (void)sig;
  if (quiet_exit) _exit(quiet_exit);
  if (in_checkpoint) {
    term_pending = 1; /* the files first; mpirun's SIGKILL may still come sooner */
    return;
  }
  ssize_t w = write(STDERR_FILENO, stop_msg, stop_len);
  (void)w;
  _exit(CLI_FAIL);
}

void dist_checkpoint_begin(void) {
  if (job.on) in_checkpoint = 1;
}

void dist_checkpoint_end(const char *dir, int64_t step) {
  if (!job.on) return;
  set_stop_msg(dir, step);
  in_checkpoint = 0;
  if (term_pending) on_term(SIGTERM);
}

/* SIGUSR1, which mpirun forwards to every rank, stops the job cleanly at the next step
 * (with a checkpoint), like Ctrl-C without mpirun: its handler is train.c's. */
static void install_signals(void) {
  struct sigaction sa, old;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_term;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  if (sigaction(SIGINT, NULL, &old) == 0) sigaction(SIGUSR1, &old, NULL);
}

/* ------------------------------------------------------------- the job */

/* The cores this rank may use: its CPU set when the launcher bound it to fewer than all
 * cores, else the node's cores shared by the ranks on the node. */
static int rank_threads(void) {
  cpu_set_t set;
  long online = sysconf(_SC_NPROCESSORS_ONLN);
  int mine = sched_getaffinity(0, sizeof set, &set) == 0 ? CPU_COUNT(&set) : (int)online;
  if (mine > 0 && mine < online) return mine;
  MPI_Comm node;
  int local = 1;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_size(node, &local);
    MPI_Comm_free(&node);
  }
  int t = (int)(online / (local > 0 ? local : 1));
  return t > 0 ? t : 1;
}

int dist_begin(void) {
  if (dist_launched_ranks() <= 1) return 0;
  if (MPI_Init(NULL, NULL) != MPI_SUCCESS) {
    cli_error("MPI_Init failed");
    return -1;
  }
  job.on = true;
  MPI_Comm_rank(MPI_COMM_WORLD, &job.rank);
  MPI_Comm_size(MPI_COMM_WORLD, &job.size);
  job.t_begin = MPI_Wtime();
  if (job.rank > 0 && !freopen("/dev/null", "w", stdout)) {
    cli_error("cannot silence stdout");
    return -1;
  }
  if (!getenv("ASINK_NUM_THREADS")) asink_set_num_threads(rank_threads());
  job.recv = malloc(sizeof(float) * PIECE);
  if (!job.recv) {
    cli_error("out of memory");
    return -1;
  }
  /* the test suite's stand-in for a rank that dies mid-run: "RANK:N" */
  const char *k = getenv("ASINK_TEST_KILL_RANK_AT");
  int kr;
  long kn;
  if (k && sscanf(k, "%d:%ld", &kr, &kn) == 2 && kr == job.rank) job.kill_at = kn;
  set_stop_msg("", -1);
  install_signals();
  return 0;
}

int dist_end(int rc) {
  if (!job.on) return rc;
  if (rc != CLI_OK && !job.agreed_failure) {
    /* this rank fails alone: the others wait for it in a collective and would hang */
    fflush(stdout);
    fflush(stderr);
    MPI_Abort(MPI_COMM_WORLD, rc);
  }
  if (job.rank == 0 && job.reduces > 0) {
    double total = MPI_Wtime() - job.t_begin;
    printf("gradient sums: %lld over %d ranks, %.1f ms each (%.1f%% of the %.1f s run), and %.1f ms each "
           "waiting for the slowest rank\n",
           (long long)job.reduces, job.size, 1e3 * job.t_reduce / (double)job.reduces,
           total > 0 ? 100.0 * job.t_reduce / total : 0.0, total, 1e3 * job.t_wait / (double)job.reduces);
  }
  free(job.recv);
  MPI_Finalize();
  return rc;
}

void dist_hold_errors(void) {
  if (job.on) cli_errors_hold();
}

/* ------------------------------------------------ agreeing on the start */

static uint64_t fnv1a64_words(const float *x, size_t n) {
  uint64_t h = 0xcbf29ce484222325ull;
  const uint32_t *w = (const uint32_t *)x;
  for (size_t i = 0; i < n; i++) {
    h ^= w[i];
    h *= 0x100000001b3ull;
  }
  return h;
}

/* What every rank must have in common, as JSON text (malloc'd): the settings but the thread
 * count and the corpus's path, the corpus's content, the parameters, the reduction; or the
 * errors of a rank that could not start. */
static char *start_note(int failed, const cli_opts *o, const json_t *settings, uint64_t corpus_hash,
                        asink_model *m) {
  json_t *j;
  if (failed) {
    j = json_pack("{s:s}", "failed", cli_errors_release());
  } else {
    cli_errors_release();
    j = json_deep_copy(settings);
    json_object_del(j, "threads");
    json_object_del(j, "corpus");
    float *p = NULL;
    size_t n = 0;
    asink_model_param_block(m, &p, &n);
    char h[2][24];
    snprintf(h[0], sizeof h[0], "%016llx", (unsigned long long)corpus_hash);
    snprintf(h[1], sizeof h[1], "%016llx", (unsigned long long)(p ? fnv1a64_words(p, n) : 0));
    json_object_set_new(j, "corpus content (FNV-1a)", json_string(h[0]));
    json_object_set_new(j, "parameters (FNV-1a)", json_string(h[1]));
    json_object_set_new(j, "allreduce", json_string(o->allreduce));
    json_object_set_new(j, "resume", json_boolean(o->resume));
  }
  char *text = json_dumps(j, JSON_SORT_KEYS | JSON_COMPACT);
  json_decref(j);
  if (!text) {
    fputs("attnsink: out of memory\n", stderr);
    exit(CLI_FAIL);
  }
  return text;
}

/* Rank 0's verdict on the notes of all ranks: 0 to go, else 1 after its error lines. */
static int judge(char **notes, const cli_opts *o) {
  json_t *mine = json_loads(notes[0], 0, NULL);
  const char *root_why = json_string_value(json_object_get(mine, "failed"));
  if (root_why) cli_error("%s", root_why);
  int bad = root_why != NULL;
  for (int r = 1; r < job.size; r++) {
    json_t *j = json_loads(notes[r], 0, NULL);
    const char *why = json_string_value(json_object_get(j, "failed"));
    if (why) {
      /* an error every rank made is shown once */
      if (!root_why || strcmp(root_why, why)) cli_error("rank %d: %s", r, why);
      bad = 1;
    } else if (!root_why && !json_equal(mine, j)) {
      const char *key;
      json_t *v;
      json_object_foreach(mine, key, v) {
        json_t *w = json_object_get(j, key);
        if (w && json_equal(v, w)) continue;
        const size_t f = JSON_ENCODE_ANY | JSON_REAL_PRECISION(10);
        char *a = json_dumps(v, f), *b = w ? json_dumps(w, f) : NULL;
        cli_error("rank %d was started with other settings than rank 0: %s is %s there, %s on rank 0 "
                  "(every rank must run the same command on the same files)",
                  r, key, b ? b : "missing", a ? a : "?");
        free(a), free(b);
        break;
      }
      bad = 1;
    }
    json_decref(j);
  }
  json_decref(mine);
  if (!bad && o->batch % job.size) {
    cli_error("--batch %d cannot be split among %d ranks: the global batch must be a multiple of the rank "
              "count (every rank trains batch / ranks windows)",
              o->batch, job.size);
    bad = 1;
  }
  return bad;
}

int dist_agree_start(int failed, const cli_opts *o, const json_t *settings, uint64_t corpus_hash,
                     asink_model *m) {
  if (!job.on) return failed ? -1 : 0;
  char *note = start_note(failed, o, settings, corpus_hash, m);
  int len = (int)strlen(note) + 1, *lens = NULL, *displs = NULL;
  char *all = NULL;
  if (job.rank == 0) lens = xcalloc((size_t)job.size, sizeof(int));
  MPI_Gather(&len, 1, MPI_INT, lens, 1, MPI_INT, 0, MPI_COMM_WORLD);
  if (job.rank == 0) {
    displs = xcalloc((size_t)job.size, sizeof(int));
    size_t total = 0;
    for (int r = 0; r < job.size; r++) displs[r] = (int)total, total += (size_t)lens[r];
    all = xmalloc(total);
  }
  MPI_Gatherv(note, len, MPI_CHAR, all, lens, displs, MPI_CHAR, 0, MPI_COMM_WORLD);
  int verdict = 0;
  if (job.rank == 0) {
    char **notes = xcalloc((size_t)job.size, sizeof(char *));
    for (int r = 0; r < job.size; r++) notes[r] = all + displs[r];
    verdict = judge(notes, o);
    free(notes);
  }
  MPI_Bcast(&verdict, 1, MPI_INT, 0, MPI_COMM_WORLD);
  free(note), free(lens), free(displs), free(all);
  if (verdict) {
    job.agreed_failure = true;
    quiet_exit = CLI_INPUT;
    return -1;
  }
  char tag[64];
  snprintf(tag, sizeof tag, "rank %d of %d: ", job.rank, job.size);
  cli_errors_tag(tag);
  return 0;
}

/* ------------------------------------------------------------ the step */

void dist_share(int B, int *first, int *count) {
  *count = B / job.size;
  *first = job.rank * *count;
}

/* g <- sum over ranks r of w[r] g_r, each element summed in rank order: the block is cut
 * into pieces, piece p into one part per rank, rank j sums part j of every rank's piece
 * (MPI_Alltoallv, then a fold over r = 0, 1, ...) and MPI_Allgatherv hands the sums round. */
static void ordered_sum(float *g, size_t n, const float *w) {
  const int N = job.size;
  int cnt[N], dsp[N], rcnt[N], rdsp[N];
  for (size_t lo = 0; lo < n; lo += PIECE) {
    size_t len = n - lo < PIECE ? n - lo : PIECE;
    for (int j = 0; j < N; j++) {
      dsp[j] = (int)(len * (size_t)j / (size_t)N);
      cnt[j] = (int)(len * (size_t)(j + 1) / (size_t)N) - dsp[j];
    }
    const int mine = cnt[job.rank];
    for (int r = 0; r < N; r++) rcnt[r] = mine, rdsp[r] = r * mine;
    MPI_Alltoallv(g + lo, cnt, dsp, MPI_FLOAT, job.recv, rcnt, rdsp, MPI_FLOAT, MPI_COMM_WORLD);
    float *out = g + lo + dsp[job.rank];
    for (int i = 0; i < mine; i++) out[i] = w[0] * job.recv[i];
    for (int r = 1; r < N; r++) {
      const float *in = job.recv + (size_t)r * mine, wr = w[r];
      for (int i = 0; i < mine; i++) out[i] += wr * in[i];
    }
    MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, g + lo, cnt, dsp, MPI_FLOAT, MPI_COMM_WORLD);
  }
}

int dist_reduce(asink_model *m, const char *mode, int B, int T, const int32_t *targets, float *loss) {
  if (!job.on) return 0;
  if (job.kill_at && job.reduces + 1 == job.kill_at) raise(SIGKILL);
  /* the barrier only splits the time into waiting for the slowest rank and summing */
  double t0 = MPI_Wtime();
  MPI_Barrier(MPI_COMM_WORLD);
  double t1 = MPI_Wtime();
  job.t_wait += t1 - t0;
  const int N = job.size, rows = B / N;
  /* every rank holds the whole batch, so each knows every rank's count of targets */
  double count[N], total = 0, mine = 0;
  for (int r = 0; r < N; r++) {
    double c = 0;
    for (size_t i = (size_t)r * rows * T; i < (size_t)(r + 1) * rows * T; i++) c += targets[i] >= 0;
    count[r] = c, total += c;
    if (r == job.rank) mine = (double)*loss * c;
  }
  float w[N];
  for (int r = 0; r < N; r++) w[r] = total > 0 ? (float)(count[r] / total) : 0.f;
  double sums[N];
  MPI_Allgather(&mine, 1, MPI_DOUBLE, sums, 1, MPI_DOUBLE, MPI_COMM_WORLD);
  double s = 0;
  for (int r = 0; r < N; r++) s += sums[r];
  *loss = total > 0 ? (float)(s / total) : 0.f;
  float *g;
  size_t n;
  if (asink_model_grad_block(m, &g, &n)) {
    cli_error("gradient block: %s", asink_last_error());
    return -1;
  }
  if (!strcmp(mode, "mpi")) {
    const float wm = w[job.rank];
    if (wm != 1.f)
      for (size_t i = 0; i < n; i++) g[i] *= wm;
    /* MPI counts are int: the block goes in pieces below 2^31 elements */
    for (size_t lo = 0; lo < n; lo += (size_t)1 << 30) {
      size_t len = n - lo < ((size_t)1 << 30) ? n - lo : ((size_t)1 << 30);
      MPI_Allreduce(MPI_IN_PLACE, g + lo, (int)len, MPI_FLOAT, MPI_SUM, MPI_COMM_WORLD);
    }
  } else {
    ordered_sum(g, n, w);
  }
  job.t_reduce += MPI_Wtime() - t1;
  job.reduces++;
  return 0;
}

int dist_stop(int local) {
  if (!job.on) return local;
  int all = 0;
  MPI_Allreduce(&local, &all, 1, MPI_INT, MPI_BOR, MPI_COMM_WORLD);
  return all;
}

#endif

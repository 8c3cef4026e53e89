/* run_args.h — the command line of pbs2p-run parsed into one struct (no I/O besides the usage text). */
#ifndef PBS2P_RUN_ARGS_H
#define PBS2P_RUN_ARGS_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

typedef enum run_mode { RUN_GENERATE, RUN_PERPLEXITY, RUN_TOKENIZE, RUN_HELP, RUN_VERSION } run_mode;

typedef struct run_args {
    run_mode mode;
    const char *model;          /* -m: the pbs2p GGUF file */
    const char *prompt;         /* -p: prompt text, or NULL */
    const char *prompt_file;    /* -f: prompt read from this file, or NULL */
    const char *ppl_file;       /* --perplexity: text file, or NULL */
    const char *tokenize_file;  /* --tokenize: text file, or NULL */
    int32_t n_predict;          /* -n, >= 0 */
    int32_t threads;            /* -t, 1..PBS2P_MODEL_MAX_THREADS */
    int32_t ctx;                /* --ctx: KV cache positions and perplexity window; 0 = the model's default */
    int32_t kv_type;            /* --kv f16|f32: PBS2P_KV_F16 (default) or PBS2P_KV_F32 */
    int32_t max_windows;        /* --max-windows, 0 = all */
    int32_t top_k;              /* --top-k, >= 0 */
    float temperature;          /* --temp, finite; <= 0 greedy */
    float top_p;                /* --top-p, (0, 1] */
    uint64_t seed;              /* --seed */
    int json;                   /* --json */
    int no_eos;                 /* --no-eos */
} run_args;

/* Fill `a` from argv; 0 on success, otherwise -1 with a one-line message in err[0..err_len). */
int run_args_parse(int argc, char **argv, run_args *a, char *err, size_t err_len);

/* The --help text. */
void run_args_usage(FILE *f);

#endif

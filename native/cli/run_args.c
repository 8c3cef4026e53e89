/* run_args.c — parse pbs2p-run's options strictly (whole numbers, ranges, one mode) into a run_args. */
#define _POSIX_C_SOURCE 200809L /* sysconf */
#include "run_args.h"

#include "pbs2p.h"

#include <errno.h>
#include <math.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

void run_args_usage(FILE *f) {
    fputs(
        "usage: pbs2p-run -m MODEL.gguf (-p PROMPT | -f PROMPT_FILE) [-n N] [-t THREADS] [--temp F] [--top-k K]\n"
        "                 [--top-p P] [--seed S] [--ctx N] [--kv f16|f32] [--no-eos] [--json]\n"
        "       pbs2p-run -m MODEL.gguf --perplexity TEXT_FILE [--ctx N] [--kv f16|f32] [--max-windows K] [-t THREADS]\n"
        "                 [--json]\n"
        "       pbs2p-run -m MODEL.gguf --tokenize TEXT_FILE\n"
        "       pbs2p-run --version | -h | --help\n"
        "\n"
        "Runs a pbs2p GGUF model (pbs2p-edge export MODEL out.gguf) with libpbs2p on the CPU.\n"
        "\n"
        "generation\n"
        "  -m, --model FILE      the pbs2p GGUF model (needs its tokenizer for text prompts)\n"
        "  -p, --prompt TEXT     prompt text; BOS is prepended when the tokenizer's add_bos is set\n"
        "  -f, --file FILE       read the prompt from FILE instead\n"
        "  -n, --n-predict N     new tokens at most (default 64)\n"
        "  -t, --threads N       worker threads (default: online CPUs, at most 256); results do not depend on it\n"
        "  --temp F              temperature; <= 0 is greedy arg-max (default 0)\n"
        "  --top-k K             keep the K most likely tokens, 0 = all (default 0)\n"
        "  --top-p P             keep the most likely tokens up to probability P, in (0, 1] (default 1)\n"
        "  --seed S              sampler seed, 0..2^64-1 (default 0): same seed, same text\n"
        "  --ctx N               KV cache positions (default min(2048, the model's context length))\n"
        "  --kv f16|f32          KV cache entries: float16 (default; half the memory, as llama.cpp) or float32\n"
        "  --no-eos              do not stop at the end-of-sequence token\n"
        "  --json                one JSON object on stdout instead of streamed text: text, tokens, prompt_ids,\n"
        "                        prompt_tokens, n_generated, stop_reason (length|eos|callback|context), timings,\n"
        "                        model, kernel, threads, ctx. Invalid UTF-8 bytes in the text become \\ufffd.\n"
        "  Text mode streams the text to stdout and ends with a timing line on stderr. Prompt tokens/s =\n"
        "  prompt tokens / prompt eval seconds; decode tokens/s = (n_generated - 1) / decode seconds, as the first\n"
        "  token comes from the prompt's logits.\n"
        "\n"
        "perplexity (as pbs2p-edge eval)\n"
        "  --perplexity FILE     perplexity of FILE (tokenized in one call, BOS/EOS as the tokenizer adds them) over\n"
        "                        non-overlapping windows of --ctx tokens (default: the model's n_ctx); prints\n"
        "                        ppl, nll, windows, tokens, ctx, seconds (JSON with --json)\n"
        "  --max-windows K       evaluate the first K windows only (default: all)\n"
        "\n"
        "tokenizer\n"
        "  --tokenize FILE       print the ids of FILE (BOS/EOS as the tokenizer adds them) as one JSON array\n"
        "\n"
        "Errors print one line 'pbs2p-run: MESSAGE' on stderr and exit with status 2.\n",
        f);
}

static int fail(char *err, size_t err_len, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, err_len, fmt, ap);
    va_end(ap);
    return -1;
}

/* A whole decimal integer in [lo, hi]. */
static int parse_int(const char *s, long long lo, long long hi, long long *out) {
    if (!*s) return -1;
    char *end;
    errno = 0;
    long long v = strtoll(s, &end, 10);
    if (errno || *end || v < lo || v > hi) return -1;
    *out = v;
    return 0;
}

static int parse_u64(const char *s, uint64_t *out) {
    if (*s < '0' || *s > '9') return -1; /* strtoull would accept "-1" and " 1" */
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (errno || *end) return -1;
    *out = (uint64_t)v;
    return 0;
}

/* A whole finite float. */
static int parse_float(const char *s, float *out) {
    if (!*s) return -1;
    char *end;
    errno = 0;
    double v = strtod(s, &end);
    if (*end || !isfinite(v) || fabs(v) > 3.0e38) return -1;
    *out = (float)v;
    return 0;
}

static int32_t default_threads(void) {
    long n = sysconf(_SC_NPROCESSORS_ONLN);
    return n < 1 ? 1 : n > PBS2P_MODEL_MAX_THREADS ? PBS2P_MODEL_MAX_THREADS : (int32_t)n;
}

/* The options that take a value, each with its short form (or NULL). */
static const char *const VALUE_OPTS[][2] = {
    {"--model", "-m"}, {"--prompt", "-p"}, {"--file", "-f"}, {"--n-predict", "-n"}, {"--threads", "-t"},
    {"--temp", NULL}, {"--top-k", NULL}, {"--top-p", NULL}, {"--seed", NULL}, {"--ctx", NULL},
    {"--kv", NULL}, {"--max-windows", NULL}, {"--perplexity", NULL}, {"--tokenize", NULL},
};

/* The long name of value option `arg` ("--x" or "--x=v" or its short form), or NULL. */
static const char *value_option(const char *arg, size_t name_len) {
    for (size_t i = 0; i < sizeof VALUE_OPTS / sizeof VALUE_OPTS[0]; i++) {
        const char *l = VALUE_OPTS[i][0], *s = VALUE_OPTS[i][1];
        if ((strlen(l) == name_len && strncmp(arg, l, name_len) == 0) ||
            (s && strlen(s) == name_len && strncmp(arg, s, name_len) == 0))
            return l;
    }
    return NULL;
}

static int set_value(run_args *a, const char *opt, const char *v, char *err, size_t err_len) {
    long long x;
    if (!strcmp(opt, "--model")) a->model = v;
    else if (!strcmp(opt, "--prompt")) a->prompt = v;
    else if (!strcmp(opt, "--file")) a->prompt_file = v;
    else if (!strcmp(opt, "--perplexity")) a->ppl_file = v;
    else if (!strcmp(opt, "--tokenize")) a->tokenize_file = v;
    else if (!strcmp(opt, "--n-predict")) {
        if (parse_int(v, 0, INT32_MAX, &x)) return fail(err, err_len, "-n expects an integer >= 0, got '%s'", v);
        a->n_predict = (int32_t)x;
    } else if (!strcmp(opt, "--threads")) {
        if (parse_int(v, 1, PBS2P_MODEL_MAX_THREADS, &x))
            return fail(err, err_len, "-t expects an integer in 1..%d, got '%s'", PBS2P_MODEL_MAX_THREADS, v);
        a->threads = (int32_t)x;
    } else if (!strcmp(opt, "--ctx")) {
        if (parse_int(v, 1, INT32_MAX, &x)) return fail(err, err_len, "--ctx expects an integer >= 1, got '%s'", v);
        a->ctx = (int32_t)x;
    } else if (!strcmp(opt, "--kv")) {
        if (strcmp(v, "f16") && strcmp(v, "f32")) return fail(err, err_len, "--kv expects f16 or f32, got '%s'", v);
        a->kv_type = strcmp(v, "f16") ? PBS2P_KV_F32 : PBS2P_KV_F16;
    } else if (!strcmp(opt, "--max-windows")) {
        if (parse_int(v, 1, INT32_MAX, &x))
            return fail(err, err_len, "--max-windows expects an integer >= 1, got '%s'", v);
        a->max_windows = (int32_t)x;
    } else if (!strcmp(opt, "--top-k")) {
        if (parse_int(v, 0, INT32_MAX, &x)) return fail(err, err_len, "--top-k expects an integer >= 0, got '%s'", v);
        a->top_k = (int32_t)x;
    } else if (!strcmp(opt, "--temp")) {
        if (parse_float(v, &a->temperature)) return fail(err, err_len, "--temp expects a finite number, got '%s'", v);
    } else if (!strcmp(opt, "--top-p")) {
        if (parse_float(v, &a->top_p) || !(a->top_p > 0.0f && a->top_p <= 1.0f))
            return fail(err, err_len, "--top-p expects a number in (0, 1], got '%s'", v);
    } else if (!strcmp(opt, "--seed")) {
        if (parse_u64(v, &a->seed)) return fail(err, err_len, "--seed expects an integer in 0..2^64-1, got '%s'", v);
    }
    return 0;
}

int run_args_parse(int argc, char **argv, run_args *a, char *err, size_t err_len) {
    *a = (run_args){.mode = RUN_GENERATE, .n_predict = 64, .threads = default_threads(), .top_p = 1.0f};
    int help = 0, version = 0;
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!strcmp(arg, "-h") || !strcmp(arg, "--help")) help = 1;
        else if (!strcmp(arg, "--version")) version = 1;
        else if (!strcmp(arg, "--json")) a->json = 1;
        else if (!strcmp(arg, "--no-eos")) a->no_eos = 1;
        else {
            const char *eq = strncmp(arg, "--", 2) == 0 ? strchr(arg, '=') : NULL;
            const char *opt = value_option(arg, eq ? (size_t)(eq - arg) : strlen(arg));
            if (!opt) {
                if (arg[0] == '-' && arg[1] != '\0') return fail(err, err_len, "unknown option '%s' (see --help)", arg);
                return fail(err, err_len, "unexpected argument '%s' (see --help)", arg);
            }
            const char *v = eq ? eq + 1 : NULL;
            if (!v) {
                if (i + 1 >= argc) return fail(err, err_len, "%s needs a value (see --help)", arg);
                v = argv[++i];
            }
            if (set_value(a, opt, v, err, err_len)) return -1;
        }
    }
    if (help) {
        a->mode = RUN_HELP;
        return 0;
    }
    if (version) {
        a->mode = RUN_VERSION;
        return 0;
    }
    if (a->prompt && a->prompt_file) return fail(err, err_len, "give the prompt with -p or -f, not both");
    const int modes = (a->prompt || a->prompt_file) + (a->ppl_file != NULL) + (a->tokenize_file != NULL);
    if (modes == 0) return fail(err, err_len, "nothing to do: give -p, -f, --perplexity or --tokenize (see --help)");
    if (modes > 1) return fail(err, err_len, "choose one of -p/-f (generate), --perplexity and --tokenize");
    if (!a->model) return fail(err, err_len, "no model: give -m MODEL.gguf (see --help)");
    a->mode = a->ppl_file ? RUN_PERPLEXITY : a->tokenize_file ? RUN_TOKENIZE : RUN_GENERATE;
    return 0;
}

/* pbs2p_run.c — pbs2p-run, the command-line runner of libpbs2p: generate text, measure perplexity, tokenize.
 *
 *   pbs2p-run -m model.gguf -p "Once upon a time" -n 64 -t 2 [--temp 0.8 --top-k 40 --top-p 0.95 --seed 1]
 *   pbs2p-run -m model.gguf -f prompt.txt -n 64 --json [--no-eos] [--ctx 1024]
 *   pbs2p-run -m model.gguf --perplexity wiki.test.txt --ctx 512 [--max-windows 16] --json
 *   pbs2p-run -m model.gguf --tokenize text.txt
 *   pbs2p-run --version | --help
 *
 * Generation: the prompt is tokenized with the model's tokenizer (BOS prepended when its add_bos is set, as the
 * Hugging Face tokenizer does), run by pbs2p_generate (greedy unless --temp > 0; top-k, temperature, top-p and a
 * splitmix64 draw seeded by --seed, so a seed always gives the same text). Text mode streams each token's bytes to
 * stdout as it comes, then prints prompt and decode tokens per second on stderr; decode tokens/s counts
 * n_generated - 1 tokens over decode_seconds (the first token comes from the prompt's logits). --json prints one
 * object instead: text, tokens, prompt_ids, prompt_tokens, n_generated, stop_reason ("length", "eos", "callback",
 * "context"), prompt_tokens_per_second, decode_tokens_per_second, prompt_seconds, decode_seconds, model, kernel,
 * threads, ctx. JSON strings are escaped; a byte of the generated text that is not well-formed UTF-8 is written as
 * \ufffd (one per byte), so the output is always valid JSON.
 * Perplexity: the whole file tokenized in one call (BOS/EOS as the tokenizer's add_bos/add_eos say, like
 * pbs2p_edge/calib/tokens.py), then pbs2p_model_perplexity over non-overlapping windows of --ctx tokens: the same
 * number as `pbs2p-edge eval --seqlen CTX`. Keys: ppl, nll, windows, tokens, ctx, seconds.
 * Tokenize: the ids of the file as one JSON array (same BOS/EOS rule).
 * Errors: one line "pbs2p-run: MESSAGE" on stderr and exit status 2; success exits 0.
 */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include "json_out.h"
#include "run_args.h"
#include "text_file.h"

#include "pbs2p.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#define EXIT_USAGE 2

/* ---- errors ------------------------------------------------------------------------------------- */

/* Print "pbs2p-run: MESSAGE" as one line (control characters of the message become spaces); returns 2. */
static int cli_error(const char *fmt, ...) {
    char msg[1024];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    for (char *c = msg; *c; c++)
        if ((unsigned char)*c < 0x20) *c = ' ';
    fflush(stdout);
    fprintf(stderr, "pbs2p-run: %s\n", msg);
    return EXIT_USAGE;
}

/* A failed library call: "WHAT: details" from pbs2p_last_error(), or the status name when there are none. WHAT is
 * left out when NULL or when the details already contain it (the file functions' messages name the path). */
static int lib_error(const char *what, pbs2p_status st) {
    const char *detail = pbs2p_last_error();
    if (!detail || !*detail) detail = pbs2p_status_str(st);
    if (!what || strstr(detail, what)) return cli_error("%s", detail);
    return cli_error("%s: %s", what, detail);
}

static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

/* ---- tokenizing ------------------------------------------------------------------------------------ */

/* ids (malloc'ed) of text[0..len): [bos] + tokenize(text) [+ eos], bos when the tokenizer's add_bos is set, eos
 * when add_eos is set and with_eos. Returns 0, or the exit status after printing the error. */
static int encode(const pbs2p_tokenizer *tok, const char *text, size_t len, int with_eos, int32_t **ids_out,
                  size_t *n_out) {
    *ids_out = NULL;
    *n_out = 0;
    pbs2p_tokenizer_info ti;
    pbs2p_status st = pbs2p_tokenizer_get_info(tok, &ti);
    if (st != PBS2P_OK) return lib_error("tokenizer", st);
    const size_t bos = ti.add_bos && ti.bos >= 0, eos = with_eos && ti.add_eos && ti.eos >= 0;
    size_t cap = len + 1; /* a token covers >= 1 byte; retried below if the library ever needs more */
    for (int attempt = 0; attempt < 2; attempt++) {
        int32_t *ids = malloc((cap + bos + eos) * sizeof *ids);
        if (!ids) return cli_error("out of memory for %zu token ids", cap);
        size_t n = 0;
        st = pbs2p_tokenize(tok, text, len, ids + bos, cap, &n);
        if (st == PBS2P_OK) {
            if (bos) ids[0] = ti.bos;
            if (eos) ids[bos + n] = ti.eos;
            *ids_out = ids;
            *n_out = bos + n + eos;
            return 0;
        }
        free(ids);
        if (st != PBS2P_ERR_ARGUMENT || n <= cap) break;
        cap = n;
    }
    return lib_error("tokenize", st);
}

/* ---- modes ------------------------------------------------------------------------------------------- */

static int load_model(const run_args *a, pbs2p_model **m, const pbs2p_tokenizer **tok) {
    const pbs2p_model_params params = {a->threads, a->ctx, a->kv_type};
    pbs2p_status st = pbs2p_model_load(a->model, &params, m);
    if (st != PBS2P_OK) return lib_error(a->model, st);
    if ((st = pbs2p_model_tokenizer(*m, tok)) != PBS2P_OK) {
        int rc = cli_error("%s: no usable tokenizer for text: %s", a->model, pbs2p_last_error());
        pbs2p_model_free(*m);
        *m = NULL;
        return rc;
    }
    return 0;
}

/* The prompt's ids, from the file's header and tokenizer, checked against the context pbs2p_model_load would make
 * (pbs2p_model_peek) before the model is loaded: a 7B model's layers take seconds to prepare, and a prompt that
 * cannot fit is refused at once. Returns 0, or the exit status after printing the error. */
static int encode_prompt(const run_args *a, const char *text, size_t len, int32_t **ids, size_t *n) {
    const pbs2p_model_params params = {a->threads, a->ctx, a->kv_type};
    pbs2p_model_info info;
    pbs2p_status st = pbs2p_model_peek(a->model, &params, &info);
    if (st != PBS2P_OK) return lib_error(a->model, st);
    pbs2p_gguf *f = NULL;
    pbs2p_tokenizer *tok = NULL;
    int rc = 0;
    if ((st = pbs2p_gguf_open(a->model, &f)) != PBS2P_OK) rc = lib_error(a->model, st);
    if (rc == 0 && (st = pbs2p_tokenizer_load(f, &tok)) != PBS2P_OK)
        rc = cli_error("%s: no usable tokenizer for text: %s", a->model, pbs2p_last_error());
    if (rc == 0) rc = encode(tok, text, len, 0, ids, n);
    if (rc == 0 && *n == 0) rc = cli_error("the prompt tokenizes to no tokens");
    if (rc == 0 && (st = pbs2p_prompt_fits(&info, *n)) != PBS2P_OK) rc = lib_error(NULL, st);
    if (rc != 0) {
        free(*ids);
        *ids = NULL;
    }
    pbs2p_tokenizer_free(tok);
    pbs2p_gguf_close(f);
    return rc;
}

/* Where the generated tokens go: ids and text accumulate; text mode also streams each piece to stdout. */
typedef struct gen_sink {
    int stream;
    int32_t *ids;   /* (cap,) generated ids; cap = n_ctx bounds n_generated */
    size_t n, cap;
    char *text;     /* the generated bytes */
    size_t len, text_cap;
    int oom;
} gen_sink;

static int on_token(void *user, int32_t token, const char *piece, size_t len) {
    gen_sink *s = user;
    if (s->n < s->cap) s->ids[s->n++] = token;
    if (!piece || len == 0) return 0;
    if (s->stream) {
        fwrite(piece, 1, len, stdout);
        fflush(stdout);
    }
    if (s->len + len > s->text_cap) {
        size_t cap = s->text_cap ? s->text_cap : 256;
        while (cap < s->len + len) cap *= 2;
        char *grown = realloc(s->text, cap);
        if (!grown) {
            s->oom = 1;
            return 1;
        }
        s->text = grown;
        s->text_cap = cap;
    }
    memcpy(s->text + s->len, piece, len);
    s->len += len;
    return 0;
}

static const char *stop_name(int32_t reason) {
    switch (reason) {
    case PBS2P_STOP_LENGTH: return "length";
    case PBS2P_STOP_EOS: return "eos";
    case PBS2P_STOP_CALLBACK: return "callback";
    case PBS2P_STOP_CONTEXT: return "context";
    }
    return "unknown";
}

/* count / seconds, or NaN (JSON null) when undefined. */
static double rate(double count, double seconds) { return count > 0 && seconds > 0 ? count / seconds : NAN; }

static int run_generate(const run_args *a) {
    char err[512];
    char *file_text = NULL;
    size_t text_len = 0;
    if (a->prompt_file) {
        if (text_file_read(a->prompt_file, &file_text, &text_len, err, sizeof err)) return cli_error("%s", err);
    } else {
        text_len = strlen(a->prompt);
    }
    const char *text = file_text ? file_text : a->prompt;

    pbs2p_model *m = NULL;
    const pbs2p_tokenizer *tok = NULL;
    int32_t *prompt = NULL;
    size_t n_prompt = 0;
    gen_sink sink = {.stream = !a->json};
    int rc = encode_prompt(a, text, text_len, &prompt, &n_prompt);
    if (rc == 0) rc = load_model(a, &m, &tok);
    pbs2p_model_info info;
    if (rc == 0 && pbs2p_model_get_info(m, &info) != PBS2P_OK) rc = lib_error("model info", PBS2P_ERR_NULL);
    if (rc == 0) {
        sink.cap = (size_t)info.n_ctx;
        sink.ids = malloc(sink.cap * sizeof *sink.ids);
        if (!sink.ids) rc = cli_error("out of memory");
    }
    pbs2p_generate_stats stats = {0};
    if (rc == 0) {
        pbs2p_generate_params gp = pbs2p_generate_default_params();
        gp.n_predict = a->n_predict;
        gp.stop_at_eos = !a->no_eos;
        gp.sampler = (pbs2p_sampler_params){a->temperature, a->top_k, a->top_p, a->seed};
        pbs2p_status st = pbs2p_generate(m, prompt, (int32_t)n_prompt, &gp, on_token, &sink, NULL, 0, &stats);
        if (sink.oom) rc = cli_error("out of memory for the generated text");
        else if (st != PBS2P_OK) rc = lib_error(NULL, st);
    }
    if (rc == 0) {
        const double prompt_tps = rate(stats.n_prompt, stats.prompt_seconds);
        const double decode_tps = rate(stats.n_generated - 1, stats.decode_seconds);
        if (a->json) {
            const char *kernel = pbs2p_kernel_name();
            printf("{\"text\": ");
            json_string(stdout, sink.text ? sink.text : "", sink.len);
            printf(", \"tokens\": ");
            json_ids(stdout, sink.ids, sink.n);
            printf(", \"prompt_ids\": ");
            json_ids(stdout, prompt, n_prompt);
            printf(", \"prompt_tokens\": %d, \"n_generated\": %d, \"stop_reason\": \"%s\"", (int)stats.n_prompt,
                   (int)stats.n_generated, stop_name(stats.stop_reason));
            printf(", \"prompt_tokens_per_second\": ");
            json_number(stdout, prompt_tps);
            printf(", \"decode_tokens_per_second\": ");
            json_number(stdout, decode_tps);
            printf(", \"prompt_seconds\": ");
            json_number(stdout, stats.prompt_seconds);
            printf(", \"decode_seconds\": ");
            json_number(stdout, stats.decode_seconds);
            printf(", \"model\": ");
            json_string(stdout, a->model, strlen(a->model));
            printf(", \"kernel\": ");
            if (kernel) json_string(stdout, kernel, strlen(kernel));
            else printf("null");
            printf(", \"threads\": %d, \"ctx\": %d, \"kv\": \"%s\"}\n", (int)info.n_threads, (int)info.n_ctx,
                   info.kv_type == PBS2P_KV_F16 ? "f16" : "f32");
        } else {
            printf("\n");
            fflush(stdout);
            fprintf(stderr, "prompt: %d tokens, %.1f tokens/s | decode: %d tokens, %.1f tokens/s | stop: %s\n",
                    (int)stats.n_prompt, isnan(prompt_tps) ? 0.0 : prompt_tps, (int)stats.n_generated,
                    isnan(decode_tps) ? 0.0 : decode_tps, stop_name(stats.stop_reason));
        }
    }
    free(sink.ids);
    free(sink.text);
    free(prompt);
    pbs2p_model_free(m);
    free(file_text);
    return rc;
}

static int run_perplexity(const run_args *a) {
    char err[512];
    char *text = NULL;
    size_t len = 0;
    if (text_file_read(a->ppl_file, &text, &len, err, sizeof err)) return cli_error("%s", err);
    pbs2p_model *m = NULL;
    const pbs2p_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = load_model(a, &m, &tok);
    if (rc == 0) rc = encode(tok, text, len, 1, &ids, &n);
    pbs2p_model_info info;
    if (rc == 0 && pbs2p_model_get_info(m, &info) != PBS2P_OK) rc = lib_error("model info", PBS2P_ERR_NULL);
    if (rc == 0) {
        const int32_t ctx = a->ctx ? a->ctx : info.n_ctx;
        if (n < (size_t)ctx) {
            rc = cli_error("%s is too short for one window: it has %zu tokens, a window needs --ctx %d", a->ppl_file,
                           n, (int)ctx);
        } else {
            pbs2p_perplexity_result r;
            const double t0 = now_seconds();
            pbs2p_status st = pbs2p_model_perplexity(m, ids, n, ctx, a->max_windows, &r);
            const double seconds = now_seconds() - t0;
            if (st != PBS2P_OK) {
                rc = lib_error("perplexity", st);
            } else if (a->json) {
                printf("{\"ppl\": ");
                json_number(stdout, r.ppl);
                printf(", \"nll\": ");
                json_number(stdout, r.nll);
                printf(", \"windows\": %d, \"tokens\": %lld, \"ctx\": %d, \"seconds\": ", (int)r.windows,
                       (long long)r.tokens, (int)ctx);
                json_number(stdout, seconds);
                printf("}\n");
            } else {
                printf("ppl %.4f (nll %.6f nats/token) over %d windows of %d tokens (%lld predicted) in %.2f s\n",
                       r.ppl, r.nll, (int)r.windows, (int)ctx, (long long)r.tokens, seconds);
            }
        }
    }
    free(ids);
    pbs2p_model_free(m);
    free(text);
    return rc;
}

static int run_tokenize(const run_args *a) {
    char err[512];
    char *text = NULL;
    size_t len = 0;
    if (text_file_read(a->tokenize_file, &text, &len, err, sizeof err)) return cli_error("%s", err);
    pbs2p_gguf *f = NULL;
    pbs2p_tokenizer *tok = NULL;
    int32_t *ids = NULL;
    size_t n = 0;
    int rc = 0;
    pbs2p_status st = pbs2p_gguf_open(a->model, &f);
    if (st != PBS2P_OK) rc = lib_error(a->model, st);
    if (rc == 0 && (st = pbs2p_tokenizer_load(f, &tok)) != PBS2P_OK) rc = lib_error(a->model, st);
    if (rc == 0) rc = encode(tok, text, len, 1, &ids, &n);
    if (rc == 0) {
        json_ids(stdout, ids, n);
        printf("\n");
    }
    free(ids);
    pbs2p_tokenizer_free(tok);
    pbs2p_gguf_close(f);
    free(text);
    return rc;
}

static int print_version(void) {
    const char *names[8];
    size_t n = pbs2p_kernel_variants(names, 8);
    const char *kernel = pbs2p_kernel_name();
    printf("pbs2p-run %s (libpbs2p %s, packed format %d, kernels:", PBS2P_VERSION_STRING, pbs2p_version(),
           PBS2P_FORMAT_VERSION);
    for (size_t i = 0; i < n && i < 8; i++) printf(" %s", names[i]);
    printf("; using %s)\n", kernel ? kernel : "none");
    return 0;
}

int main(int argc, char **argv) {
    run_args a;
    char err[512];
    if (run_args_parse(argc, argv, &a, err, sizeof err)) return cli_error("%s", err);
    int rc;
    switch (a.mode) {
    case RUN_HELP: run_args_usage(stdout); rc = 0; break;
    case RUN_VERSION: rc = print_version(); break;
    case RUN_PERPLEXITY: rc = run_perplexity(&a); break;
    case RUN_TOKENIZE: rc = run_tokenize(&a); break;
    default: rc = run_generate(&a); break;
    }
    if (fflush(stdout) != 0 || ferror(stdout)) {
        if (rc == 0) rc = cli_error("cannot write to stdout");
    }
    return rc;
}

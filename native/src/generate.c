/* generate.c — text generation: the prompt in one eval, then sample and eval one token at a time (KV cache). */
#define _POSIX_C_SOURCE 199309L /* clock_gettime */
#include "internal.h"

#include <stdlib.h>
#include <time.h>

pbs2p_generate_params pbs2p_generate_default_params(void) {
    pbs2p_generate_params p = {64, 1, pbs2p_sampler_default_params()};
    return p;
}

/* Monotonic wall clock in seconds. */
static double now_seconds(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}

pbs2p_status pbs2p_prompt_fits(const pbs2p_model_info *info, size_t n_prompt) {
    if (!info) return pbs2p_fail(PBS2P_ERR_NULL, "info is NULL");
    if (n_prompt >= (size_t)info->n_ctx)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "the prompt (%zu tokens) is longer than the context allows: n_ctx %d "
                          "holds at most %d prompt tokens and one generated token", n_prompt, (int)info->n_ctx,
                          (int)info->n_ctx - 1);
    return PBS2P_OK;
}

static pbs2p_status check_args(const int32_t *prompt, int32_t n_prompt,
                               const pbs2p_generate_params *p, const int32_t *out_tokens, size_t cap,
                               const pbs2p_model_info *info) {
    if (n_prompt < 1) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_prompt %d must be >= 1", (int)n_prompt);
    pbs2p_status st = pbs2p_prompt_fits(info, (size_t)n_prompt);
    if (st != PBS2P_OK) return st;
    if (p->n_predict < 0) return pbs2p_fail(PBS2P_ERR_ARGUMENT, "n_predict %d must be >= 0", (int)p->n_predict);
    if (p->stop_at_eos != 0 && p->stop_at_eos != 1)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "stop_at_eos %d must be 0 or 1", (int)p->stop_at_eos);
    if (!out_tokens && cap != 0) return pbs2p_fail(PBS2P_ERR_NULL, "out_tokens is NULL with cap %zu", cap);
    if (out_tokens && cap < (size_t)p->n_predict)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "out_tokens holds %zu ids, fewer than n_predict %d", cap,
                          (int)p->n_predict);
    for (int32_t t = 0; t < n_prompt; t++)
        if (prompt[t] < 0 || prompt[t] >= info->n_vocab)
            return pbs2p_fail(PBS2P_ERR_ARGUMENT, "prompt token %d at index %d is outside the vocabulary 0..%d",
                              (int)prompt[t], (int)t, (int)info->n_vocab - 1);
    return PBS2P_OK;
}

/* The generation loop proper; the sampler and the logits row (n_vocab,) belong to the caller. Stop reasons are
 * checked in this order after each token: eos, callback, n_predict, full context. decode_seconds sums the
 * samplings of tokens 2.. and the evals of tokens 1.. (never the callback's time). */
static pbs2p_status run(pbs2p_model *m, const int32_t *prompt, int32_t n_prompt, const pbs2p_generate_params *p,
                        pbs2p_token_callback callback, void *user_data, int32_t *out_tokens,
                        const pbs2p_model_info *info, pbs2p_sampler *sampler, float *logits,
                        pbs2p_generate_stats *st) {
    const pbs2p_tokenizer *tok = NULL;
    int32_t eos = -1;
    if (pbs2p_model_tokenizer(m, &tok) == PBS2P_OK) {
        pbs2p_tokenizer_info ti;
        if (pbs2p_tokenizer_get_info(tok, &ti) == PBS2P_OK && p->stop_at_eos) eos = ti.eos;
    } else {
        tok = NULL; /* no tokenizer is not a failure here: pieces are NULL, no eos */
    }
    const size_t V = (size_t)info->n_vocab;

    double t0 = now_seconds();
    pbs2p_status s = pbs2p_model_eval(m, prompt, n_prompt, 0, logits, V);
    st->prompt_seconds = now_seconds() - t0;
    if (s != PBS2P_OK) return s;
    st->n_prompt = n_prompt;
    st->stop_reason = PBS2P_STOP_LENGTH;
    if (p->n_predict == 0) return PBS2P_OK;

    /* pos: the position the token sampled now takes in the cache (evaluated only when generation continues). */
    for (int32_t pos = n_prompt;; pos++) {
        int32_t token;
        t0 = now_seconds();
        if ((s = pbs2p_sampler_sample(sampler, logits, V, &token)) != PBS2P_OK) return s;
        if (st->n_generated > 0) st->decode_seconds += now_seconds() - t0;
        if (out_tokens) out_tokens[st->n_generated] = token;
        st->n_generated++;
        int stop = 0;
        if (callback) {
            const char *piece = NULL;
            size_t len = 0;
            if (tok && pbs2p_token_to_piece(tok, token, &piece, &len) != PBS2P_OK) piece = NULL, len = 0;
            stop = callback(user_data, token, piece, len) != 0;
        }
        if (token == eos) st->stop_reason = PBS2P_STOP_EOS;
        else if (stop) st->stop_reason = PBS2P_STOP_CALLBACK;
        else if (st->n_generated == p->n_predict) st->stop_reason = PBS2P_STOP_LENGTH;
        else if (pos + 1 >= info->n_ctx) st->stop_reason = PBS2P_STOP_CONTEXT; /* prompt + generated == n_ctx */
        else {
            t0 = now_seconds();
            s = pbs2p_model_eval(m, &token, 1, pos, logits, V);
            st->decode_seconds += now_seconds() - t0;
            if (s != PBS2P_OK) return s;
            continue;
        }
        return PBS2P_OK;
    }
}

pbs2p_status pbs2p_generate(pbs2p_model *m, const int32_t *prompt, int32_t n_prompt,
                            const pbs2p_generate_params *params, pbs2p_token_callback callback, void *user_data,
                            int32_t *out_tokens, size_t cap, pbs2p_generate_stats *stats) {
    pbs2p_generate_stats local = {0};
    pbs2p_generate_stats *st = stats ? stats : &local;
    *st = (pbs2p_generate_stats){0};
    if (!m) return pbs2p_fail(PBS2P_ERR_NULL, "model is NULL");
    if (!prompt) return pbs2p_fail(PBS2P_ERR_NULL, "prompt is NULL");
    const pbs2p_generate_params p = params ? *params : pbs2p_generate_default_params();
    pbs2p_model_info info;
    pbs2p_status s = pbs2p_model_get_info(m, &info);
    if (s != PBS2P_OK) return s;
    if ((s = check_args(prompt, n_prompt, &p, out_tokens, cap, &info)) != PBS2P_OK) return s;

    pbs2p_sampler *sampler = NULL;
    if ((s = pbs2p_sampler_new(&p.sampler, info.n_vocab, &sampler)) != PBS2P_OK) return s;
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits); /* (n_vocab,) the last token's row */
    if (!logits) {
        pbs2p_sampler_free(sampler);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a row of %d logits", (int)info.n_vocab);
    }
    s = run(m, prompt, n_prompt, &p, callback, user_data, out_tokens, &info, sampler, logits, st);
    free(logits);
    pbs2p_sampler_free(sampler);
    return s;
}

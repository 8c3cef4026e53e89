/* perplexity.c — perplexity over non-overlapping windows, exactly as pbs2p_edge/model/perplexity.py computes it. */
#include "internal.h"

#include <math.h>
#include <stdlib.h>

/* -log softmax(row)[target] of one row of V logits: the max subtracted, the log-softmax in float32 like
 * torch's cross_entropy on float logits; the sum of exponentials accumulated in double. */
static double token_nll(const float *row, size_t V, int32_t target) {
    float max = row[0];
    for (size_t i = 1; i < V; i++)
        if (row[i] > max) max = row[i];
    double sum = 0.0;
    for (size_t i = 0; i < V; i++) sum += (double)expf(row[i] - max);
    const float logp = (row[target] - max) - logf((float)sum);
    return -(double)logp;
}

pbs2p_status pbs2p_model_perplexity(pbs2p_model *m, const int32_t *tokens, size_t n, int32_t ctx,
                                    int32_t max_windows, pbs2p_perplexity_result *out) {
    if (!m || !tokens || !out)
        return pbs2p_fail(PBS2P_ERR_NULL, "%s is NULL", !m ? "model" : !tokens ? "tokens" : "out");
    *out = (pbs2p_perplexity_result){0};
    pbs2p_model_info info;
    pbs2p_status s = pbs2p_model_get_info(m, &info);
    if (s != PBS2P_OK) return s;
    if (ctx < 2 || ctx > info.n_ctx)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "ctx %d must be in 2..n_ctx %d (a window predicts ctx-1 tokens)",
                          (int)ctx, (int)info.n_ctx);
    if (max_windows < 0)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "max_windows %d must be >= 0 (0: all)", (int)max_windows);
    if (n < (size_t)ctx)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "text too short for one window: needs %d tokens, has %zu", (int)ctx, n);
    size_t windows = n / (size_t)ctx;
    if (max_windows > 0 && windows > (size_t)max_windows) windows = (size_t)max_windows;
    if (windows > INT32_MAX)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "%zu windows exceed the int32 count; pass max_windows", windows);

    const size_t V = (size_t)info.n_vocab;
    if (V > SIZE_MAX / sizeof(float) / (size_t)ctx)
        return pbs2p_fail(PBS2P_ERR_ARGUMENT, "ctx %d x n_vocab %zu logits overflow the address space", (int)ctx, V);
    float *logits = malloc((size_t)ctx * V * sizeof *logits); /* (ctx, V) every row of one window */
    if (!logits)
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %d x %zu logits (%zu MiB)", (int)ctx, V,
                          ((size_t)ctx * V * sizeof *logits) >> 20);

    double total = 0.0; /* nats summed over every predicted token */
    pbs2p_model_reset(m);
    for (size_t w = 0; w < windows && s == PBS2P_OK; w++) {
        const int32_t *x = tokens + w * (size_t)ctx;
        s = pbs2p_model_eval(m, x, ctx, 0, logits, (size_t)ctx * V); /* n_past 0: an empty cache */
        for (int32_t t = 0; s == PBS2P_OK && t + 1 < ctx; t++) total += token_nll(logits + (size_t)t * V, V, x[t + 1]);
    }
    pbs2p_model_reset(m);
    free(logits);
    if (s != PBS2P_OK) return s;

    out->windows = (int32_t)windows;
    out->tokens = (int64_t)windows * (int64_t)(ctx - 1);
    out->nll = total / (double)out->tokens;
    out->ppl = exp(out->nll);
    return PBS2P_OK;
}

/* model_read.c — reading a model's keys and tensors from its GGUF: hyper-parameter keys checked against their range,
 * F32 vectors (norms, biases, frequencies) copied and checked finite, and row matrices (embedding, head, positions)
 * left in place in the mapping. model_load.c and the architectures' config readers (model_llama.c, model_opt.c)
 * call these; they call nothing of the model's. */
#include "model_internal.h"

#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *arch_key(const config *c, const char *suffix, char *buf, size_t cap) {
    snprintf(buf, cap, "%s.%s", c->arch_name, suffix);
    return buf;
}

pbs2p_status key_int(const pbs2p_gguf *f, const char *key, int64_t fallback, int32_t lo, int32_t hi, int32_t *out) {
    uint32_t v;
    pbs2p_status st = pbs2p_gguf_get_u32(f, key, &v);
    if (st == PBS2P_ERR_NOT_FOUND && fallback >= 0) {
        *out = (int32_t)fallback;
        return PBS2P_OK;
    }
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key %s", key);
    if (st != PBS2P_OK) return pbs2p_fail(st, "key %s: %s", key, pbs2p_last_error());
    if (v < (uint32_t)lo || v > (uint32_t)hi)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "key %s = %" PRIu32 " is outside %d..%d", key, v, lo, hi);
    *out = (int32_t)v;
    return PBS2P_OK;
}

pbs2p_status key_pos_float(const pbs2p_gguf *f, const char *key, float fallback, float *out) {
    pbs2p_status st = pbs2p_gguf_get_f32(f, key, out);
    if (st == PBS2P_ERR_NOT_FOUND && fallback > 0) {
        *out = fallback;
        return PBS2P_OK;
    }
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the key %s", key);
    if (st != PBS2P_OK) return pbs2p_fail(st, "key %s: %s", key, pbs2p_last_error());
    if (!(isfinite(*out) && *out > 0)) return pbs2p_fail(PBS2P_ERR_FORMAT, "key %s = %g must be finite and > 0", key, *out);
    return PBS2P_OK;
}

pbs2p_status key_str(const pbs2p_gguf *f, const char *key, char *buf, size_t cap, int *present) {
    const char *s;
    size_t len;
    pbs2p_status st = pbs2p_gguf_get_str(f, key, &s, &len);
    *present = st == PBS2P_OK;
    buf[0] = '\0';
    if (st == PBS2P_ERR_NOT_FOUND) return PBS2P_OK;
    if (st != PBS2P_OK) return pbs2p_fail(st, "key %s: %s", key, pbs2p_last_error());
    if (len >= cap || memchr(s, '\0', len)) return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "key %s: unknown value '%.*s'",
                                                              key, (int)(len < SHOWN ? len : SHOWN), s);
    memcpy(buf, s, len);
    buf[len] = '\0';
    return PBS2P_OK;
}

pbs2p_status read_f32(const pbs2p_gguf *f, const char *name, int32_t n, int required, float **out) {
    pbs2p_gguf_tensor t;
    *out = NULL;
    pbs2p_status st = pbs2p_gguf_find_tensor(f, name, &t);
    if (st == PBS2P_ERR_NOT_FOUND && !required) return PBS2P_OK;
    if (st == PBS2P_ERR_NOT_FOUND) return pbs2p_fail(PBS2P_ERR_FORMAT, "the model lacks the tensor %s", name);
    if (st != PBS2P_OK) return st;
    if (t.type != PBS2P_GGML_F32 || t.n_dims != 1 || t.ne[0] != (uint64_t)n)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s must be F32 of shape (%d,), found %s with %" PRIu64 " elements",
                          name, n, pbs2p_ggml_type_name(t.type) ? pbs2p_ggml_type_name(t.type) : "?", t.n_elements);
    float *v = malloc((size_t)n * sizeof *v);
    if (!v) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for tensor %s", name);
    memcpy(v, t.data, (size_t)n * sizeof *v); /* the mapping may be unaligned for float */
    for (int32_t i = 0; i < n; i++)           /* a norm, bias or frequency: NaN / Inf would reach every logit */
        if (!isfinite(v[i])) {
            const int nan = isnan(v[i]);
            free(v);
            return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s[%d] is %s: the model file holds non-finite weights", name,
                              (int)i, nan ? "NaN" : "infinite");
        }
    *out = v;
    return PBS2P_OK;
}

pbs2p_status read_rows(const pbs2p_gguf *f, const char *name, int32_t rows, int32_t cols, row_matrix *out) {
    pbs2p_gguf_tensor t;
    pbs2p_status st = pbs2p_gguf_find_tensor(f, name, &t);
    if (st != PBS2P_OK) return st;
    const char *tn = pbs2p_ggml_type_name(t.type);
    if (t.type != PBS2P_GGML_F16 && t.type != PBS2P_GGML_Q8_0 && t.type != PBS2P_GGML_Q4_0)
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "tensor %s has type %s; the model runtime reads F16, Q8_0 or Q4_0",
                          name, tn ? tn : "?");
    if (t.n_dims != 2 || t.ne[0] != (uint64_t)cols || (rows && t.ne[1] != (uint64_t)rows) || t.ne[1] > MAX_VOCAB)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "tensor %s has ne (%" PRIu64 ", %" PRIu64 "), expected (%d, %d)", name,
                          t.ne[0], t.n_dims > 1 ? t.ne[1] : 1, cols, rows);
    out->data = t.data;
    out->type = t.type;
    out->rows = (int32_t)t.ne[1];
    out->cols = cols;
    out->row_bytes = pbs2p_dense_row_bytes(t.type, cols); /* the GGUF reader checked ne[0] against the type's block */
    return PBS2P_OK;
}

pbs2p_status read_embedding(const pbs2p_gguf *f, const char *base, int32_t rows, int32_t cols, row_matrix *out) {
    pbs2p_status st = pbs2p_gguf_embedding_blocks(f, base, cols, out);
    if (st == PBS2P_ERR_NOT_FOUND) {
        char name[32];
        snprintf(name, sizeof name, "%s.weight", base);
        return read_rows(f, name, rows, cols, out);
    }
    if (st != PBS2P_OK) return st;
    if ((rows && out->rows != rows) || out->rows > MAX_VOCAB)
        return pbs2p_fail(PBS2P_ERR_FORMAT, "%s has %d rows, expected %d", base, out->rows, rows);
    return PBS2P_OK;
}

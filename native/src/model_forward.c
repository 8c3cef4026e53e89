/* model_forward.c — the decoder forward with a KV cache, in the order a token goes through it: token embedding ->
 * per block (norm -> attention -> MLP) -> final norm -> head. Llama, Qwen2, Gemma 3 and OPT run this one code path,
 * steered by config; the per-row math is model_math.c, the split over the model's threads model_threads.c. */
#include "model_internal.h"

#include <stdlib.h>
#include <string.h>

/* ----------------------------------------------------------------------------------------------------
 * Scratch of one eval */

size_t run_floats(const config *c, size_t T, int32_t n_ctx, int32_t n_threads) {
    size_t D = (size_t)c->n_embd, QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    size_t wide = QD > D ? QD : D;
    return T * (2 * D + wide + QD + 2 * KVD + 2 * (size_t)c->n_ff) +
           (size_t)n_threads * PBS2P_ATTEND_F16_QUERIES * (size_t)n_ctx;
}

static void free_run(run_state *s) {
    free(s->x);
    s->x = NULL;
}

static pbs2p_status build_run(const config *c, int32_t T, int32_t n_ctx, int32_t n_threads, run_state *s) {
    const size_t D = (size_t)c->n_embd, QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    float *p = malloc(run_floats(c, (size_t)T, n_ctx, n_threads) * sizeof *p);
    if (!p) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the activations of %d tokens", T);
    s->x = p;                  p += (size_t)T * D;
    s->xb = p;                 p += (size_t)T * D;
    s->att_out = p;            p += (size_t)T * (QD > D ? QD : D);
    s->q = p;                  p += (size_t)T * QD;
    s->k = p;                  p += (size_t)T * KVD;
    s->v = p;                  p += (size_t)T * KVD;
    s->hb = p;                 p += (size_t)T * (size_t)c->n_ff;
    s->hb2 = p;                p += (size_t)T * (size_t)c->n_ff;
    s->scores = p;
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * Token embedding */

/* s->x (T, D) = token embedding [+ learned position embedding, row n_past + t + pos_offset, decoded into xb first] */
static void embed(const pbs2p_model *m, run_state *s, const int32_t *tokens, int32_t T, int32_t n_past) {
    const config *c = &m->c;
    const int32_t D = c->n_embd;
    for (int32_t t = 0; t < T; t++) {
        float *x = s->x + (size_t)t * D, *pos = s->xb + (size_t)t * D;
        pbs2p_dense_row(&m->w.token_embd, tokens[t], x);
        if (c->embd_scale != 1.0f)
            for (int32_t j = 0; j < D; j++) x[j] *= c->embd_scale;
        if (!m->w.position_embd.data) continue;
        pbs2p_dense_row(&m->w.position_embd, n_past + t + c->pos_offset, pos);
        for (int32_t j = 0; j < D; j++) x[j] += pos[j];
    }
}

/* ----------------------------------------------------------------------------------------------------
 * Attention: q, k, v; RoPE; the new keys and values into the cache; softmax(q k^T) v per (token, head); o */

typedef struct attention_job {
    const pbs2p_model *m;
    run_state *s;
    pbs2p_attend_fn attend;
    pbs2p_attend_f16_fn attend_f16;
    pbs2p_attend_block_fn attend_block;
    int32_t l, T, n_past;
    int32_t first, stride; /* this job's (token, head) pairs: i = first, first + stride, ... < T * H; on a float16
                            * cache read directly its (token, KV head, part) units (see run_attention); with
                            * block_scores its blocks (see run_attention_blocks) */
    int32_t parts;         /* on a float16 cache read directly: the parts each KV head's query heads are split in */
    float *scores;         /* (PBS2P_ATTEND_F16_QUERIES, n_ctx) this job's attention weights */
    const float *wkey;     /* a float16 cache's layer widened once (see attention), or NULL: keys (KVD, wldk) */
    const float *wvalue;   /* its values (positions, KVD) */
    size_t wldk;
    float *block_scores;   /* (PBS2P_ATTEND_MAX_QUERIES, n_past + T) this job's weights of a block, or NULL: one
                            * query at a time */
} attention_job;

/* Causal attention of the job's (token t, head h) pairs: softmax(q k^T * score_scale) v over cache positions
 * 0..n_past+t of layer l (the last `window` of them with a sliding window); query head h reads KV head
 * h / (H / Hkv). On a float16 cache read directly (decode) the units are (token, KV head, part): part k of the KV
 * head's query heads (at most PBS2P_ATTEND_F16_QUERIES of them) goes through attend_f16 at once, which widens
 * each key and value row once for all; every query's result is the same as alone. */
static void run_attention(void *arg) {
    const attention_job *j = arg;
    const config *c = &j->m->c;
    const int32_t hd = c->head_dim, group = c->n_head / c->n_head_kv;
    const size_t QD = (size_t)c->n_head * hd, KVD = (size_t)c->n_head_kv * hd, n_ctx = (size_t)j->m->n_ctx;
    const kv_cache *kv = &j->m->kv;
    const size_t ldk = kv->ldk, k_layer = (size_t)j->l * KVD * ldk, v_layer = (size_t)j->l * n_ctx * KVD;
    const int32_t window = j->m->w.blocks[j->l].window;
    if (kv->f16 && !j->wkey) {
        const int32_t units = j->T * c->n_head_kv * j->parts;
        for (int32_t u = j->first; u < units; u += j->stride) {
            const int32_t t = u / (c->n_head_kv * j->parts), kvh = u / j->parts % c->n_head_kv;
            /* the parts' sizes differ by at most one; odd KV heads take them in reverse, so that threads taking
             * every other unit get alike shares */
            const int32_t k = kvh % 2 ? j->parts - 1 - u % j->parts : u % j->parts;
            const int32_t h0 = kvh * group + k * group / j->parts, h1 = kvh * group + (k + 1) * group / j->parts;
            const int32_t end = j->n_past + t + 1, start = window && end > window ? end - window : 0;
            const float *q[PBS2P_ATTEND_F16_QUERIES];
            float *out[PBS2P_ATTEND_F16_QUERIES];
            for (int32_t h = h0; h < h1; h++) {
                q[h - h0] = j->s->q + (size_t)t * QD + (size_t)h * hd;
                out[h - h0] = j->s->att_out + (size_t)t * QD + (size_t)h * hd;
            }
            j->attend_f16(h1 - h0, q, out, kv16_keys(kv, c, j->l, kvh), kv16_values(kv, c, j->l, kvh),
                          kv16_span_stride(c), start, end - start, hd, c->score_scale, j->scores, n_ctx);
        }
        return;
    }
    for (int32_t i = j->first; i < j->T * c->n_head; i += j->stride) {
        const int32_t t = i / c->n_head, h = i % c->n_head, end = j->n_past + t + 1; /* positions 0..end-1 */
        const int32_t start = window && end > window ? end - window : 0;             /* visible from start */
        const size_t kv_off = (size_t)(h / group) * hd;
        const float *q = j->s->q + (size_t)t * QD + (size_t)h * hd;
        float *out = j->s->att_out + (size_t)t * QD + (size_t)h * hd;
        if (j->wkey)
            j->attend(q, j->wkey + kv_off * j->wldk + (size_t)start, j->wldk, j->wvalue + (size_t)start * KVD + kv_off,
                      KVD, end - start, hd, c->score_scale, j->scores, out);
        else
            j->attend(q, (const float *)kv->key + k_layer + kv_off * ldk + (size_t)start, ldk,
                      (const float *)kv->value + v_layer + (size_t)start * KVD + kv_off, KVD, end - start, hd,
                      c->score_scale, j->scores, out);
    }
}

/* A prompt's attention a block of queries at a time (attend_block): the query heads of one KV head (all of them, or
 * PBS2P_ATTEND_MAX_QUERIES) for as many consecutive tokens as fill a block, so each key and value row read serves up
 * to PBS2P_ATTEND_MAX_QUERIES queries; every query's result is run_attention's, bit for bit. Block b of the job's
 * b = first, first + stride, ...: token block b / (Hkv * head blocks), KV head and head block from the rest, so a
 * thread's blocks spread over the prompt (later tokens see more positions). Keys and values are float32: the cache's
 * or the widened copy. */
static void run_attention_blocks(void *arg) {
    const attention_job *j = arg;
    const config *c = &j->m->c;
    const int32_t hd = c->head_dim, group = c->n_head / c->n_head_kv;
    const int32_t heads = group < PBS2P_ATTEND_MAX_QUERIES ? group : PBS2P_ATTEND_MAX_QUERIES; /* per block */
    const int32_t head_blocks = (group + heads - 1) / heads;
    int32_t tokens = PBS2P_ATTEND_MAX_QUERIES / heads; /* per block: a multiple of 4 queries where one fits (the
                                                        * kernel takes queries four at a time) */
    while (tokens > 1 && heads * tokens % 4) tokens--;
    const int32_t blocks = (j->T + tokens - 1) / tokens * c->n_head_kv * head_blocks;
    const size_t QD = (size_t)c->n_head * hd, KVD = (size_t)c->n_head_kv * hd, n_ctx = (size_t)j->m->n_ctx;
    const int32_t window = j->m->w.blocks[j->l].window;
    const float *key, *value;
    size_t ldk;
    if (j->wkey) {
        key = j->wkey, value = j->wvalue, ldk = j->wldk;
    } else {
        ldk = j->m->kv.ldk;
        key = (const float *)j->m->kv.key + (size_t)j->l * KVD * ldk;
        value = (const float *)j->m->kv.value + (size_t)j->l * n_ctx * KVD;
    }
    const float *q[PBS2P_ATTEND_MAX_QUERIES];
    float *out[PBS2P_ATTEND_MAX_QUERIES];
    int32_t first[PBS2P_ATTEND_MAX_QUERIES], n[PBS2P_ATTEND_MAX_QUERIES];
    for (int32_t b = j->first; b < blocks; b += j->stride) {
        const int32_t t0 = b / (c->n_head_kv * head_blocks) * tokens, g = b % (c->n_head_kv * head_blocks);
        const int32_t kvh = g / head_blocks, h0 = kvh * group + g % head_blocks * heads;
        const int32_t t1 = t0 + tokens < j->T ? t0 + tokens : j->T, h_end = (kvh + 1) * group;
        const int32_t h1 = h0 + heads < h_end ? h0 + heads : h_end;
        int32_t nq = 0;
        for (int32_t t = t0; t < t1; t++) {
            const int32_t end = j->n_past + t + 1, start = window && end > window ? end - window : 0;
            for (int32_t h = h0; h < h1; h++, nq++) {
                q[nq] = j->s->q + (size_t)t * QD + (size_t)h * hd;
                out[nq] = j->s->att_out + (size_t)t * QD + (size_t)h * hd;
                first[nq] = start;
                n[nq] = end - start;
            }
        }
        const size_t kv_off = (size_t)kvh * hd;
        j->attend_block(nq, q, out, first, n, key + kv_off * ldk, ldk, value + kv_off, KVD, hd, c->score_scale,
                        j->block_scores, (size_t)j->n_past + (size_t)j->T);
    }
}

/* A prompt of at least WIDEN_MIN_TOKENS tokens on a float16 cache: attend_f16 would widen each visible position again
 * for every (token, head) pair, T x H times over (17 % of a 256-token SmolLM2 prompt); instead the layer's visible
 * keys and values are widened once into float32 and attend runs on them, which is what attend_f16 computes, bit for
 * bit. Only while that copy stays within WIDEN_MAX_BYTES (the memory a run may add to the cache); NULL otherwise, or
 * when the copy cannot be had. */
#define WIDEN_MIN_TOKENS 16
#define WIDEN_MAX_BYTES ((size_t)16 << 20)

static float *widened_layer(const pbs2p_model *m, pbs2p_widen_fn widen, int32_t l, int32_t T, size_t n) {
    const size_t KVD = (size_t)m->c.n_head_kv * m->c.head_dim, tile = PBS2P_KV_TILE;
    if (!m->kv.f16 || T < WIDEN_MIN_TOKENS || 2 * n * KVD * sizeof(float) > WIDEN_MAX_BYTES) return NULL;
    float *w = malloc(2 * n * KVD * sizeof *w);
    if (!w) return NULL; /* attend_f16 reads the cache itself: slower, the same result */
    /* keys (KVD, n) transposed, values (n, KVD): attend's float32 layout, from each head's tiles */
    const int32_t hd = m->c.head_dim;
    const size_t stride = kv16_span_stride(&m->c);
    for (int32_t h = 0; h < m->c.n_head_kv; h++) {
        const uint16_t *key = kv16_keys(&m->kv, &m->c, l, h), *value = kv16_values(&m->kv, &m->c, l, h);
        for (size_t p0 = 0; p0 < n; p0 += tile) {
            const uint16_t *t = key + pbs2p_kv_key(stride, hd, (int32_t)p0);
            for (int32_t d = 0; d < hd; d++)
                widen(t + (size_t)d * tile, w + ((size_t)h * hd + (size_t)d) * n + p0,
                      (int32_t)(n - p0 < tile ? n - p0 : tile));
        }
        for (size_t p = 0; p < n; p++)
            widen(value + pbs2p_kv_value(stride, hd, (int32_t)p), w + n * KVD + p * KVD + (size_t)h * hd, hd);
    }
    return w;
}

/* s->att_out (T, QD) = causal attention of s->q over cache positions 0..n_past+t of layer l, its (token, head) pairs
 * split across the pool's threads. A prompt of at least WIDEN_MIN_TOKENS tokens on float32 keys (a float32 cache, or
 * a float16 one widened) runs in blocks of queries (run_attention_blocks), the same bits; decode, or a prompt whose
 * block scores cannot be had, one query at a time on float32 keys, a KV head's query heads together on a float16
 * cache read directly (run_attention). */
static pbs2p_status attention(const pbs2p_model *m, run_state *s, int32_t l, int32_t T, int32_t n_past) {
    const config *c = &m->c;
    pbs2p_kernels k;
    if (!pbs2p_kernel_current(&k)) return PBS2P_ERR_NO_KERNEL; /* message already set */
    /* q.k and p.v multiply-adds: 2 hd per (token, head, visible position) */
    const size_t work = 2 * (size_t)c->head_dim * (size_t)c->n_head * (size_t)T * ((size_t)n_past + (size_t)T);
    int nt = threads_for(m->pool, work, T * c->n_head);
    const size_t n = (size_t)n_past + (size_t)T, KVD = (size_t)c->n_head_kv * c->head_dim;
    float *wide = widened_layer(m, k.widen, l, T, n);
    /* read directly, a float16 cache's units are (token, KV head, part): as few parts as hold a KV head's query heads
     * PBS2P_ATTEND_F16_QUERIES at a time, more while there would be fewer than two units per thread */
    const int32_t group = c->n_head / c->n_head_kv, kv_units = T * c->n_head_kv;
    int32_t parts = (group + PBS2P_ATTEND_F16_QUERIES - 1) / PBS2P_ATTEND_F16_QUERIES;
    while (parts < group && kv_units * parts < 2 * nt) parts++;
    if (m->kv.f16 && !wide && nt > kv_units * parts) nt = kv_units * parts;
    const int blocked = T >= WIDEN_MIN_TOKENS && (wide || !m->kv.f16);
    /* (threads, PBS2P_ATTEND_MAX_QUERIES, n): 2 MiB per thread at 32 k positions */
    float *block_scores = blocked ? malloc((size_t)nt * PBS2P_ATTEND_MAX_QUERIES * n * sizeof(float)) : NULL;
    attention_job jobs[PBS2P_MODEL_MAX_THREADS];
    for (int b = 0; b < nt; b++)
        jobs[b] = (attention_job){m, s, k.attend, k.attend_f16, k.attend_block, l, T, n_past, b, nt, parts,
                                  s->scores + (size_t)b * PBS2P_ATTEND_F16_QUERIES * m->n_ctx, wide,
                                  wide ? wide + n * KVD : NULL, n,
                                  block_scores ? block_scores + (size_t)b * PBS2P_ATTEND_MAX_QUERIES * n : NULL};
    pbs2p_pool_run(m->pool, block_scores ? run_attention_blocks : run_attention, jobs, sizeof jobs[0], nt);
    free(block_scores);
    free(wide);
    return PBS2P_OK;
}

/* s->xb (T, D) = o(attention(q, k, v of `in`)): positions (RoPE or q scaling), new keys / values into the cache. */
static pbs2p_status self_attention(pbs2p_model *m, run_state *s, const block *b, int32_t l, const float *in, int32_t T,
                                   int32_t n_past) {
    const config *c = &m->c;
    const size_t QD = (size_t)c->n_head * c->head_dim, KVD = (size_t)c->n_head_kv * c->head_dim;
    pbs2p_pool *pool = m->pool;
    pbs2p_status st;
    const linear *qkv[] = {&b->lin[LIN_Q], &b->lin[LIN_K], &b->lin[LIN_V]};
    float *const qkv_out[] = {s->q, s->k, s->v};
    if ((st = matmul_shared(qkv, 3, in, T, qkv_out, pool)) != PBS2P_OK) return st;
    if (c->q_scale != 1.0f)
        for (size_t i = 0; i < (size_t)T * QD; i++) s->q[i] *= c->q_scale;
    if (b->q_norm) /* Gemma: RMSNorm of every query and key head, before RoPE */
        for (size_t h = 0; h < (size_t)T * (size_t)c->n_head; h++) {
            float *q = s->q + h * (size_t)c->head_dim;
            norm_row(q, q, b->q_norm, NULL, c->head_dim, NORM_RMS, c->eps);
        }
    if (b->k_norm)
        for (size_t h = 0; h < (size_t)T * (size_t)c->n_head_kv; h++) {
            float *k = s->k + h * (size_t)c->head_dim;
            norm_row(k, k, b->k_norm, NULL, c->head_dim, NORM_RMS, c->eps);
        }
    for (int32_t t = 0; t < T; t++) {
        if (b->inv_freq) {
            rope(s->q + (size_t)t * QD, c->n_head, c->head_dim, n_past + t, b->inv_freq);
            rope(s->k + (size_t)t * KVD, c->n_head_kv, c->head_dim, n_past + t, b->inv_freq);
        }
        const float *k_new = s->k + (size_t)t * KVD, *v_new = s->v + (size_t)t * KVD;
        if (m->kv.f16) { /* each head's tile (model_internal.h) */
            const int32_t hd = c->head_dim;
            const size_t stride = kv16_span_stride(c);
            for (int32_t h = 0; h < c->n_head_kv; h++) {
                uint16_t *key = kv16_keys(&m->kv, c, l, h) + pbs2p_kv_key(stride, hd, n_past + t);
                uint16_t *value = kv16_values(&m->kv, c, l, h) + pbs2p_kv_value(stride, hd, n_past + t);
                for (int32_t d = 0; d < hd; d++) {
                    key[(size_t)d * PBS2P_KV_TILE] = pbs2p_float_to_half(k_new[(size_t)h * hd + (size_t)d]);
                    value[d] = pbs2p_float_to_half(v_new[(size_t)h * hd + (size_t)d]);
                }
            }
        } else { /* keys transposed, value rows of every head */
            const size_t key_at = (size_t)l * KVD * m->kv.ldk + (size_t)(n_past + t);
            const size_t cache_row = ((size_t)l * m->n_ctx + (size_t)(n_past + t)) * KVD;
            float *key = (float *)m->kv.key + key_at;
            for (size_t i = 0; i < KVD; i++) key[i * m->kv.ldk] = k_new[i];
            memcpy((float *)m->kv.value + cache_row, v_new, KVD * sizeof(float));
        }
    }
    if ((st = attention(m, s, l, T, n_past)) != PBS2P_OK) return st;
    return matmul(&b->lin[LIN_O], s->att_out, T, s->xb, pool);
}

/* ----------------------------------------------------------------------------------------------------
 * MLP */

/* s->xb (T, D) = down(act(gate(in)) * up(in)), or down(act(up(in))) without a gate (OPT: fc2(act(fc1(in)))). */
static pbs2p_status mlp(pbs2p_model *m, run_state *s, const block *b, const float *in, int32_t T) {
    pbs2p_pool *pool = m->pool;
    const size_t n = (size_t)T * (size_t)m->c.n_ff;
    pbs2p_status st;
    if (m->c.has_gate) {
        const linear *gate_up[] = {&b->lin[LIN_GATE], &b->lin[LIN_UP]};
        float *const gate_up_out[] = {s->hb, s->hb2};
        if ((st = matmul_shared(gate_up, 2, in, T, gate_up_out, pool)) != PBS2P_OK) return st;
        activate_pool(pool, s->hb, s->hb2, n, m->c.act);
    } else {
        if ((st = matmul(&b->lin[LIN_UP], in, T, s->hb, pool)) != PBS2P_OK) return st;
        activate_pool(pool, s->hb, NULL, n, m->c.act);
    }
    return matmul(&b->lin[LIN_DOWN], s->hb, T, s->xb, pool);
}

/* ----------------------------------------------------------------------------------------------------
 * A decoder block: norm -> attention -> residual, norm -> MLP -> residual */

/* One decoder block over the T tokens of s->x (updated in place).
 * pre-LN (Llama, most OPT):  x += attn(norm1(x)); x += mlp(norm2(x))
 * post-LN (OPT-350m):        x = norm1(x + attn(x)); x = norm2(x + mlp(x))
 * Gemma 3 (sandwich):        x += post1(attn(norm1(x))); x += post2(mlp(norm2(x))) */
static pbs2p_status forward_block(pbs2p_model *m, run_state *s, int32_t l, int32_t T, int32_t n_past) {
    const config *c = &m->c;
    const block *b = &m->w.blocks[l];
    const size_t TD = (size_t)T * (size_t)c->n_embd;
    pbs2p_status st;

    if (c->norm_before) norm_rows_pool(m->pool, c, s->xb, s->x, T, b->attn_norm, b->attn_norm_bias);
    /* self_attention overwrites s->xb only after its q, k, v projections have read it */
    if ((st = self_attention(m, s, b, l, c->norm_before ? s->xb : s->x, T, n_past)) != PBS2P_OK) return st;
    if (b->attn_post_norm) norm_rows_pool(m->pool, c, s->xb, s->xb, T, b->attn_post_norm, NULL);
    for (size_t i = 0; i < TD; i++) s->x[i] += s->xb[i];
    if (!c->norm_before) norm_rows_pool(m->pool, c, s->x, s->x, T, b->attn_norm, b->attn_norm_bias);

    if (c->norm_before) norm_rows_pool(m->pool, c, s->xb, s->x, T, b->ffn_norm, b->ffn_norm_bias);
    if ((st = mlp(m, s, b, c->norm_before ? s->xb : s->x, T)) != PBS2P_OK) return st;
    if (b->ffn_post_norm) norm_rows_pool(m->pool, c, s->xb, s->xb, T, b->ffn_post_norm, NULL);
    for (size_t i = 0; i < TD; i++) s->x[i] += s->xb[i];
    if (!c->norm_before) norm_rows_pool(m->pool, c, s->x, s->x, T, b->ffn_norm, b->ffn_norm_bias);
    return PBS2P_OK;
}

/* ----------------------------------------------------------------------------------------------------
 * The head, and the forward of T tokens */

/* logits (T, V) = X (T, D) output^T. */
static pbs2p_status head(const pbs2p_model *m, const float *X, int32_t T, float *logits) {
    return dense_matmul(m->pool, &m->w.output, X, T, logits);
}

/* model_forward on the scratch s: embedding, the blocks, then (head_rows 1: the last row, 2: every row, 0: none) the
 * final norm and the head. */
static pbs2p_status forward(pbs2p_model *m, run_state *s, const int32_t *tokens, int32_t T, int32_t n_past,
                            float *logits, int head_rows) {
    const config *c = &m->c;
    const int32_t D = c->n_embd;
    pbs2p_status st;
    embed(m, s, tokens, T, n_past);
    for (int32_t l = 0; l < c->n_layer; l++)
        if ((st = forward_block(m, s, l, T, n_past)) != PBS2P_OK) return st;
    if (!head_rows) return PBS2P_OK;
    /* final norm (when the model has one) of the rows the head needs, then the head */
    const int32_t first = head_rows == 2 ? 0 : T - 1;
    const float *rows = s->x + (size_t)first * D;
    if (m->w.output_norm) {
        norm_rows_pool(m->pool, c, s->xb, rows, T - first, m->w.output_norm, m->w.output_norm_bias);
        rows = s->xb;
    }
    return head(m, rows, T - first, logits);
}

pbs2p_status model_forward(pbs2p_model *m, const int32_t *tokens, int32_t T, int32_t n_past, float *logits,
                           int all_rows) {
    const int32_t chunk = chunk_tokens(T);
    run_state s = {0};
    pbs2p_status st = build_run(&m->c, chunk, m->n_ctx, m->n_threads, &s);
    /* chunk after chunk: each one's keys and values are in the cache before the next one's queries read them */
    for (int32_t t0 = 0; st == PBS2P_OK && t0 < T; t0 += chunk) {
        const int32_t n = T - t0 < chunk ? T - t0 : chunk;
        float *out = all_rows ? logits + (size_t)t0 * (size_t)m->c.n_vocab : logits;
        st = forward(m, &s, tokens + t0, n, n_past + t0, out, all_rows ? 2 : t0 + n == T);
    }
    free_run(&s);
    return st;
}

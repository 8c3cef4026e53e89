/* attention_impl.h — causal attention of one query and one head over the KV cache, in plain C shaped for the
 * compiler's vectorizer (e^x too: exp_approx.h): every inner loop runs along contiguous memory with no reduction across
 * its iterations (the softmax's max and sum keep LANES running values).
 * The keys are stored transposed (key dimension d of position p at kt[d * ldk + p]), so the scores of all positions
 * grow together, four key dimensions per pass; the output grows four positions per pass over the value rows. Each
 * attention_<variant>.c includes this file and is compiled with its variant's flags, so the same lines become AVX2,
 * AVX-512 or NEON code. The order of the sums and which products are fused (ATT_FMA, dot4) are fixed by the code, not
 * by the compiler or the thread count.
 * attend_f16 reads a float16 cache (in tiles of PBS2P_KV_TILE positions, internal.h): the file including this one
 * first defines widen(src, dst, n), float16 bits to float32 with its variant's conversion, and attend_f16 widens a
 * tile's four key rows (four value rows) at a time into a buffer on the stack, then runs the same lines as attend on
 * it: the same sums in the same order, so its result is attend's on the widened cache, bit for bit.
 * attend_block runs the same lines for several queries that read one head's cache (a prompt's query heads of one KV
 * head, its consecutive tokens): a chunk of key rows or value rows is loaded once for all of them, and each query's
 * result is still attend's, bit for bit. */
#ifndef PBS2P_ATTENTION_IMPL_H
#define PBS2P_ATTENTION_IMPL_H

#include <math.h>

#include "exp_approx.h"

#define LANES 16 /* running maxima and sums of the softmax: one AVX-512 vector, two AVX2 or four NEON vectors */

#define CHUNK 256 /* value columns attend_f16 widens at a time, and its buffer's row (a tile's positions fit) */

/* The end of the part of position p0's tile (internal.h, PBS2P_KV_TILE) that lies before `end`. */
static inline int32_t tile_part_end(int32_t p0, int32_t end) {
    const int32_t tile_end = (p0 / PBS2P_KV_TILE + 1) * PBS2P_KV_TILE;
    return end < tile_end ? end : tile_end;
}

/* The one multiply-add of attention, fused: a variant with FMA instructions gets fmaf inline (every SIMD variant, and
 * the intrinsics of attention_avx512.c's decode kernel repeat it op for op); the ref variant, built for any x86-64
 * (where fmaf would be a libm call per element), defines it as a * b + c before including this file. */
#ifndef ATT_FMA
#define ATT_FMA(a, b, c) fmaf(a, b, c)
#endif

/* a0 b0 + a1 b1 + a2 b2 + a3 b3 in the one order every kernel uses: a1 b1 rounded, then a0 b0, a2 b2 and a3 b3 fused
 * onto it (GCC's contraction of the sum written left to right, now written out so that no compiler picks another). */
static inline float dot4(float a0, float a1, float a2, float a3, float b0, float b1, float b2, float b3) {
    return ATT_FMA(a3, b3, ATT_FMA(a2, b2, ATT_FMA(a0, b0, a1 * b1)));
}

/* s[p] += q0 k0[p] + q1 k1[p] + q2 k2[p] + q3 k3[p] for p < n (one group of four key dimensions). */
static inline void scores4(float q0, float q1, float q2, float q3, const float *restrict k0, const float *restrict k1,
                           const float *restrict k2, const float *restrict k3, float *restrict s, int32_t n) {
    for (int32_t p = 0; p < n; p++) s[p] = s[p] + dot4(q0, q1, q2, q3, k0[p], k1[p], k2[p], k3[p]);
}

static inline void scores1(float qd, const float *restrict k, float *restrict s, int32_t n) {
    for (int32_t p = 0; p < n; p++) s[p] = ATT_FMA(qd, k[p], s[p]);
}

/* out[j] += a0 v0[j] + a1 v1[j] + a2 v2[j] + a3 v3[j] for j < m (four value rows). */
static inline void values4(float a0, float a1, float a2, float a3, const float *restrict v0, const float *restrict v1,
                           const float *restrict v2, const float *restrict v3, float *restrict out, int32_t m) {
    for (int32_t j = 0; j < m; j++) out[j] = out[j] + dot4(a0, a1, a2, a3, v0[j], v1[j], v2[j], v3[j]);
}

static inline void values1(float a, const float *restrict vp, float *restrict out, int32_t m) {
    for (int32_t j = 0; j < m; j++) out[j] = ATT_FMA(a, vp[j], out[j]);
}

/* s[p] = e^(scale * s[p] - max) for p < n; returns 1 / their sum, the factor the caller applies with the values.
 * The max and the sum run in LANES independent lanes, so they vectorize too. */
static inline float softmax_weights(float *restrict s, int32_t n, float scale) {
    float lane[LANES], mx = -INFINITY, sum = 0.0f;
    for (int k = 0; k < LANES; k++) lane[k] = -INFINITY;
    int32_t p0 = 0;
    for (; p0 + LANES <= n; p0 += LANES)
        for (int k = 0; k < LANES; k++) {
            s[p0 + k] *= scale;
            lane[k] = s[p0 + k] > lane[k] ? s[p0 + k] : lane[k];
        }
    for (int32_t p = p0; p < n; p++) {
        s[p] *= scale;
        mx = s[p] > mx ? s[p] : mx;
    }
    for (int k = 0; k < LANES; k++) mx = lane[k] > mx ? lane[k] : mx;
    for (int32_t p = 0; p < n; p++) s[p] = exp_approx(s[p] - mx);
    for (int k = 0; k < LANES; k++) lane[k] = 0.0f;
    for (int32_t p = 0; p + LANES <= n; p += LANES)
        for (int k = 0; k < LANES; k++) lane[k] += s[p + k];
    for (int32_t p = p0; p < n; p++) sum += s[p];
    for (int k = 0; k < LANES; k++) sum += lane[k];
    return 1.0f / sum;
}

static void attend(const float *restrict q, const float *restrict kt, size_t ldk, const float *restrict v, size_t ldv,
                   int32_t n, int32_t hd, float scale, float *restrict s, float *restrict out) {
    /* s[p] = q . key p */
    for (int32_t p = 0; p < n; p++) s[p] = 0.0f;
    int32_t d = 0;
    for (; d + 4 <= hd; d += 4)
        scores4(q[d], q[d + 1], q[d + 2], q[d + 3], kt + (size_t)d * ldk, kt + (size_t)(d + 1) * ldk,
                kt + (size_t)(d + 2) * ldk, kt + (size_t)(d + 3) * ldk, s, n);
    for (; d < hd; d++) scores1(q[d], kt + (size_t)d * ldk, s, n);
    const float inv = softmax_weights(s, n, scale);
    /* out = sum_p s[p] inv value p */
    for (int32_t j = 0; j < hd; j++) out[j] = 0.0f;
    int32_t p = 0;
    for (; p + 4 <= n; p += 4)
        values4(s[p] * inv, s[p + 1] * inv, s[p + 2] * inv, s[p + 3] * inv, v + (size_t)p * ldv,
                v + (size_t)(p + 1) * ldv, v + (size_t)(p + 2) * ldv, v + (size_t)(p + 3) * ldv, out, hd);
    for (; p < n; p++) values1(s[p] * inv, v + (size_t)p * ldv, out, hd);
}

/* Positions of the key chunk attend_block's scores run over before the next four key dimensions: the chunk's four key
 * rows (4 KiB) and every query's scores on it stay in L1 while each query of the block reads them. */
#define KEY_CHUNK 256
/* Floats of value rows attend_block's weighted sums run over before the next rows (8 KiB, in L1 for every query). */
#define VALUE_CHUNK_FLOATS 2048

/* Four queries' multiply-adds on the same four rows: out_x[i] += x0 r0[i] + x1 r1[i] + x2 r2[i] + x3 r3[i] for
 * i < n, x = a..d (each query's four coefficients), each row element loaded once for the four. The scores use it with
 * four key dimensions of each query on four key rows (each line is scores4's sum), the weighted sums with four
 * positions' weights on four value rows (each line values4's), so every query keeps attend's bits. Not inlined: inside
 * attend_block_part its eight row pointers were spilled and reloaded in the loop; alone they stay in registers (one
 * call per 256 positions or 2048 value floats). */
static __attribute__((noinline)) void madd4x4(const float *restrict xa, const float *restrict xb,
                                              const float *restrict xc, const float *restrict xd,
                                              const float *restrict r0, const float *restrict r1,
                                              const float *restrict r2, const float *restrict r3,
                                              float *restrict oa, float *restrict ob, float *restrict oc,
                                              float *restrict od, int32_t n) {
    const float a0 = xa[0], a1 = xa[1], a2 = xa[2], a3 = xa[3], b0 = xb[0], b1 = xb[1], b2 = xb[2], b3 = xb[3];
    const float c0 = xc[0], c1 = xc[1], c2 = xc[2], c3 = xc[3], d0 = xd[0], d1 = xd[1], d2 = xd[2], d3 = xd[3];
    for (int32_t i = 0; i < n; i++) {
        oa[i] = oa[i] + dot4(a0, a1, a2, a3, r0[i], r1[i], r2[i], r3[i]);
        ob[i] = ob[i] + dot4(b0, b1, b2, b3, r0[i], r1[i], r2[i], r3[i]);
        oc[i] = oc[i] + dot4(c0, c1, c2, c3, r0[i], r1[i], r2[i], r3[i]);
        od[i] = od[i] + dot4(d0, d1, d2, d3, r0[i], r1[i], r2[i], r3[i]);
    }
}

/* The positions [*a, *b) of [c0, c1) that a query seeing first .. first + n - 1 sees (empty: *a >= *b). */
static inline void seen(int32_t c0, int32_t c1, int32_t first, int32_t n, int32_t *a, int32_t *b) {
    *a = c0 > first ? c0 : first;
    *b = c1 < first + n ? c1 : first + n;
}

/* One query's part of a value chunk [c0, c1): its groups of four positions from the group start p that start before
 * c1, then its single positions (the last n % 4, after every group) in the chunk. s: its scores from position f,
 * w: its softmax factor. */
static inline void values_rest(const float *restrict s, float w, int32_t f, int32_t n, int32_t p, int32_t c0,
                               int32_t c1, const float *restrict v, size_t ldv, float *restrict o, int32_t hd) {
    const int32_t full = f + (n & ~3), e = f + n;
    for (; p < c1 && p < full; p += 4)
        values4(s[p - f] * w, s[p - f + 1] * w, s[p - f + 2] * w, s[p - f + 3] * w, v + (size_t)p * ldv,
                v + (size_t)(p + 1) * ldv, v + (size_t)(p + 2) * ldv, v + (size_t)(p + 3) * ldv, o, hd);
    for (p = c0 > full ? c0 : full; p < c1 && p < e; p++) values1(s[p - f] * w, v + (size_t)p * ldv, o, hd);
}

/* The first group start (first + 4k) at or after c0. */
static inline int32_t group_from(int32_t c0, int32_t first) {
    return c0 <= first ? first : first + ((c0 - first + 3) & ~3);
}

/* attend_block for at most PBS2P_ATTEND_MAX_QUERIES queries (one softmax factor each on the stack). Queries go four
 * at a time through madd4x4 on the positions all four see (the same group starts, for the values),
 * one at a time on the rest. */
static void attend_block_part(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                              const int32_t *n, const float *restrict kt, size_t ldk, const float *restrict v,
                              size_t ldv, int32_t hd, float scale, float *restrict s, size_t lds) {
    float inv[PBS2P_ATTEND_MAX_QUERIES];
    int32_t lo = first[0], hi = first[0] + n[0]; /* the positions some query sees */
    for (int32_t i = 0; i < nq; i++) {
        lo = first[i] < lo ? first[i] : lo;
        hi = first[i] + n[i] > hi ? first[i] + n[i] : hi;
        for (int32_t p = 0; p < n[i]; p++) s[(size_t)i * lds + (size_t)p] = 0.0f;
    }
    /* s_i[p - first_i] = q_i . key p: per position the sum over d runs in attend's order; chunks and quads only
     * reorder which position is summed when */
    for (int32_t c0 = lo; c0 < hi; c0 += KEY_CHUNK) {
        const int32_t c1 = hi - c0 < KEY_CHUNK ? hi : c0 + KEY_CHUNK;
        int32_t d = 0;
        for (; d + 4 <= hd; d += 4) {
            const float *k0 = kt + (size_t)d * ldk, *k1 = k0 + ldk, *k2 = k1 + ldk, *k3 = k2 + ldk;
            int32_t i = 0, a[4], b[4];
            for (; i + 4 <= nq; i += 4) {
                int32_t A = c0, B = c1; /* the positions all four see */
                for (int r = 0; r < 4; r++) {
                    seen(c0, c1, first[i + r], n[i + r], &a[r], &b[r]);
                    A = a[r] > A ? a[r] : A;
                    B = b[r] < B ? b[r] : B;
                }
                if (A >= B) A = B = c1; /* none: each query alone below */
                else
                    madd4x4(q[i] + d, q[i + 1] + d, q[i + 2] + d, q[i + 3] + d, k0 + A, k1 + A, k2 + A, k3 + A,
                            s + (size_t)i * lds + (size_t)(A - first[i]),
                            s + (size_t)(i + 1) * lds + (size_t)(A - first[i + 1]),
                            s + (size_t)(i + 2) * lds + (size_t)(A - first[i + 2]),
                            s + (size_t)(i + 3) * lds + (size_t)(A - first[i + 3]), B - A);
                for (int r = 0; r < 4; r++) { /* [a, A) and [B, b) */
                    const float *qr = q[i + r] + d;
                    float *sr = s + (size_t)(i + r) * lds;
                    const int32_t lo_end = A < b[r] ? A : b[r], hi_start = B > a[r] ? B : a[r];
                    if (a[r] < lo_end)
                        scores4(qr[0], qr[1], qr[2], qr[3], k0 + a[r], k1 + a[r], k2 + a[r], k3 + a[r],
                                sr + (a[r] - first[i + r]), lo_end - a[r]);
                    if (hi_start < b[r])
                        scores4(qr[0], qr[1], qr[2], qr[3], k0 + hi_start, k1 + hi_start, k2 + hi_start,
                                k3 + hi_start, sr + (hi_start - first[i + r]), b[r] - hi_start);
                }
            }
            for (; i < nq; i++) {
                seen(c0, c1, first[i], n[i], &a[0], &b[0]);
                if (a[0] >= b[0]) continue;
                const float *qi = q[i] + d;
                scores4(qi[0], qi[1], qi[2], qi[3], k0 + a[0], k1 + a[0], k2 + a[0], k3 + a[0],
                        s + (size_t)i * lds + (size_t)(a[0] - first[i]), b[0] - a[0]);
            }
        }
        for (; d < hd; d++)
            for (int32_t i = 0; i < nq; i++) {
                int32_t a, b;
                seen(c0, c1, first[i], n[i], &a, &b);
                if (a >= b) continue;
                scores1(q[i][d], kt + (size_t)d * ldk + (size_t)a, s + (size_t)i * lds + (size_t)(a - first[i]),
                        b - a);
            }
    }
    for (int32_t i = 0; i < nq; i++) {
        inv[i] = softmax_weights(s + (size_t)i * lds, n[i], scale);
        for (int32_t j = 0; j < hd; j++) out[i][j] = 0.0f;
    }
    /* out_i = sum_p s_i[p] inv_i value p, in attend's order: groups of four positions from first_i, then the last
     * n_i % 4 one by one; a chunk takes the groups that start in it, then its single positions (all after every
     * group) */
    const int32_t vc = VALUE_CHUNK_FLOATS / hd >= 4 ? (VALUE_CHUNK_FLOATS / hd) & ~3 : 4;
    for (int32_t c0 = lo; c0 < hi; c0 += vc) {
        const int32_t c1 = hi - c0 < vc ? hi : c0 + vc;
        int32_t i = 0;
        for (; i + 4 <= nq; i += 4) {
            const int32_t f = first[i];
            int32_t p = group_from(c0, f);
            if (first[i + 1] == f && first[i + 2] == f && first[i + 3] == f) { /* the same group starts */
                int32_t full = n[i];
                for (int r = 1; r < 4; r++) full = n[i + r] < full ? n[i + r] : full;
                full = f + (full & ~3); /* the groups all four have */
                for (; p < c1 && p < full; p += 4) {
                    float w[4][4];
                    for (int r = 0; r < 4; r++)
                        for (int k = 0; k < 4; k++)
                            w[r][k] = s[(size_t)(i + r) * lds + (size_t)(p - f + k)] * inv[i + r];
                    madd4x4(w[0], w[1], w[2], w[3], v + (size_t)p * ldv, v + (size_t)(p + 1) * ldv,
                            v + (size_t)(p + 2) * ldv, v + (size_t)(p + 3) * ldv, out[i], out[i + 1], out[i + 2],
                            out[i + 3], hd);
                }
                for (int r = 0; r < 4; r++)
                    values_rest(s + (size_t)(i + r) * lds, inv[i + r], f, n[i + r], p, c0, c1, v, ldv, out[i + r], hd);
            } else
                for (int r = 0; r < 4; r++)
                    values_rest(s + (size_t)(i + r) * lds, inv[i + r], first[i + r], n[i + r],
                                group_from(c0, first[i + r]), c0, c1, v, ldv, out[i + r], hd);
        }
        for (; i < nq; i++)
            values_rest(s + (size_t)i * lds, inv[i], first[i], n[i], group_from(c0, first[i]), c0, c1, v, ldv, out[i],
                        hd);
    }
}

/* nq queries that read the same head's cache (the query heads of one KV head, consecutive tokens): query i (q[i],
 * hd floats) over positions first[i] .. first[i] + n[i] - 1 of kt and v, into out[i]; every result is attend's on
 * that query's range, bit for bit (each score sums over d in attend's order, each query has attend's softmax on its
 * own scores, each output sums over p in attend's order), while each key and value row loaded from memory serves
 * every query that sees it. scores: nq rows of lds >= max n[i] floats. */
static void attend_block(int32_t nq, const float *const *q, float *const *out, const int32_t *first, const int32_t *n,
                         const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd, float scale, float *s,
                         size_t lds) {
    for (int32_t i0 = 0; i0 < nq; i0 += PBS2P_ATTEND_MAX_QUERIES) {
        const int32_t m = nq - i0 < PBS2P_ATTEND_MAX_QUERIES ? nq - i0 : PBS2P_ATTEND_MAX_QUERIES;
        attend_block_part(m, q + i0, out + i0, first + i0, n + i0, kt, ldk, v, ldv, hd, scale, s, lds);
    }
}

#ifdef PBS2P_ATTEND_F16
/* nq <= PBS2P_ATTEND_F16_QUERIES queries that read one head's float16 cache over positions first .. first + n - 1 (a
 * decode step's query heads of one KV head), in tiles span_stride apart (internal.h: pbs2p_kv_key, pbs2p_kv_value):
 * each tile's part in view widened four key rows at a time once for all queries, value rows four at a time; query
 * i's scores at s + i * lds. */
static void attend_f16(int32_t nq, const float *const *q, float *const *out, const uint16_t *restrict kt,
                       const uint16_t *restrict v, size_t span_stride, int32_t first, int32_t n, int32_t hd,
                       float scale, float *restrict s, size_t lds) {
    enum { T = PBS2P_KV_TILE };
    float buf[4 * CHUNK], inv[PBS2P_ATTEND_F16_QUERIES];
    for (int32_t i = 0; i < nq; i++)
        for (int32_t p = 0; p < n; p++) s[(size_t)i * lds + (size_t)p] = 0.0f;
    for (int32_t p0 = first; p0 < first + n;) { /* each position's sum runs over d in attend's order */
        const int32_t end = tile_part_end(p0, first + n), len = end - p0;
        const uint16_t *k = kt + pbs2p_kv_key(span_stride, hd, p0);
        float *sp = s + (p0 - first);
        int32_t d = 0;
        for (; d + 4 <= hd; d += 4) {
            for (int r = 0; r < 4; r++) widen(k + (size_t)(d + r) * T, buf + r * CHUNK, len);
            for (int32_t i = 0; i < nq; i++)
                scores4(q[i][d], q[i][d + 1], q[i][d + 2], q[i][d + 3], buf, buf + CHUNK, buf + 2 * CHUNK,
                        buf + 3 * CHUNK, sp + (size_t)i * lds, len);
        }
        for (; d < hd; d++) {
            widen(k + (size_t)d * T, buf, len);
            for (int32_t i = 0; i < nq; i++) scores1(q[i][d], buf, sp + (size_t)i * lds, len);
        }
        p0 = end;
    }
    for (int32_t i = 0; i < nq; i++) {
        inv[i] = softmax_weights(s + (size_t)i * lds, n, scale);
        for (int32_t j = 0; j < hd; j++) out[i][j] = 0.0f;
    }
    for (int32_t j0 = 0; j0 < hd; j0 += CHUNK) { /* each output column's sum runs over p in attend's order */
        const int32_t m = hd - j0 < CHUNK ? hd - j0 : CHUNK;
        int32_t p = 0;
        for (; p + 4 <= n; p += 4) {
            for (int r = 0; r < 4; r++)
                widen(v + pbs2p_kv_value(span_stride, hd, first + p + r) + (size_t)j0, buf + r * CHUNK, m);
            for (int32_t i = 0; i < nq; i++) {
                const float *si = s + (size_t)i * lds;
                values4(si[p] * inv[i], si[p + 1] * inv[i], si[p + 2] * inv[i], si[p + 3] * inv[i], buf,
                        buf + CHUNK, buf + 2 * CHUNK, buf + 3 * CHUNK, out[i] + j0, m);
            }
        }
        for (; p < n; p++) {
            widen(v + pbs2p_kv_value(span_stride, hd, first + p) + (size_t)j0, buf, m);
            for (int32_t i = 0; i < nq; i++) values1(s[(size_t)i * lds + (size_t)p] * inv[i], buf, out[i] + j0, m);
        }
    }
}
#endif

#endif

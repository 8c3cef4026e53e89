/* attention_avx512.c — attention_impl.h for the avx512 variant: one query or a block, float32 or float16 cache. */
#include "internal.h"
#include <immintrin.h>

/* float16 bits to float32, sixteen at a time (AVX-512F's conversion). */
static inline void widen(const uint16_t *restrict src, float *restrict dst, int32_t n) {
    int32_t i = 0;
    for (; i + 16 <= n; i += 16)
        _mm512_storeu_ps(dst + i, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(src + i))));
    for (; i < n; i++) dst[i] = pbs2p_half_to_float(src[i]);
}

#define PBS2P_ATTEND_F16
#include "attention_impl.h"

void pbs2p_attend_avx512(const float *q, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t n, int32_t hd,
                         float scale, float *scores, float *out) {
    attend(q, kt, ldk, v, ldv, n, hd, scale, scores, out);
}

void pbs2p_attend_block_avx512(int32_t nq, const float *const *q, float *const *out, const int32_t *first,
                               const int32_t *n, const float *kt, size_t ldk, const float *v, size_t ldv, int32_t hd,
                               float scale, float *scores, size_t lds) {
    attend_block(nq, q, out, first, n, kt, ldk, v, ldv, hd, scale, scores, lds);
}

/* ---- Decoding on a float16 cache (a step's query heads of one KV head): attend_f16's sums in registers ----
 * attend_f16 widens a tile of key rows into a buffer and runs attend's loops over it, so each score and each output
 * column makes a round trip through memory per four key dimensions or four positions. Here the scores of a tile's
 * positions (BLOCK = PBS2P_KV_TILE) stay in registers over all key dimensions and the output columns (VALUE_VECS
 * vectors) over all positions: each float16 row is converted as it is loaded and used at once. Every score and output
 * column still takes attend's operations in attend's order (dot4: the product of the second term, then three fused
 * multiply-adds, then the add; positions in groups of four from the first, the last n % 4 one at a time with one fused
 * multiply-add each), so the result is attend_f16's bit for bit (test_attention). */
#define BLOCK PBS2P_KV_TILE /* positions per score block (a tile): two vectors per query */
#define VALUE_VECS 4 /* output vectors per pass over the value rows, per query */

static inline __m512 half16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }

/* The first `count` (<= 16) float16 at p, zeros after them (nothing past them is read). */
static inline __m512 half16_first(const uint16_t *p, int32_t count) {
    const __mmask32 m = count >= 16 ? 0xFFFFu : (__mmask32)((1u << count) - 1u);
    return _mm512_cvtph_ps(_mm512_castsi512_si256(_mm512_maskz_loadu_epi16(m, p)));
}

/* dot4 on sixteen lanes: a1 b1, then a0 b0, a2 b2 and a3 b3 fused onto it. */
static inline __m512 dot4_x16(__m512 a0, __m512 a1, __m512 a2, __m512 a3, __m512 b0, __m512 b1, __m512 b2, __m512 b3) {
    return _mm512_fmadd_ps(a3, b3, _mm512_fmadd_ps(a2, b2, _mm512_fmadd_ps(a0, b0, _mm512_mul_ps(a1, b1))));
}

/* Scores of len (<= BLOCK) positions of one tile for nq queries, as attend forms them: from zero, each group of four
 * key dimensions added in order (hd a multiple of 4). k: the first position's dimension 0 in the tile; s: its score
 * in query 0's row (lds apart). */
static void score_block(int32_t nq, const float *const *q, const uint16_t *k, int32_t len, int32_t hd, float *s,
                        size_t lds) {
    const int32_t len0 = len < 16 ? len : 16, len1 = len - len0;
    __m512 a[PBS2P_ATTEND_F16_QUERIES][2];
    for (int32_t i = 0; i < nq; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
    for (int32_t d = 0; d < hd; d += 4) {
        __m512 k0[4], k1[4];
        for (int r = 0; r < 4; r++) {
            const uint16_t *row = k + (size_t)(d + r) * BLOCK;
            k0[r] = half16_first(row, len0);
            k1[r] = len1 > 0 ? half16_first(row + 16, len1) : _mm512_setzero_ps();
        }
        for (int32_t i = 0; i < nq; i++) {
            const __m512 q0 = _mm512_set1_ps(q[i][d]), q1 = _mm512_set1_ps(q[i][d + 1]);
            const __m512 q2 = _mm512_set1_ps(q[i][d + 2]), q3 = _mm512_set1_ps(q[i][d + 3]);
            a[i][0] = _mm512_add_ps(a[i][0], dot4_x16(q0, q1, q2, q3, k0[0], k0[1], k0[2], k0[3]));
            a[i][1] = _mm512_add_ps(a[i][1], dot4_x16(q0, q1, q2, q3, k1[0], k1[1], k1[2], k1[3]));
        }
    }
    const __mmask16 m0 = (__mmask16)((1u << len0) - 1u), m1 = (__mmask16)((1u << len1) - 1u);
    for (int32_t i = 0; i < nq; i++) {
        _mm512_mask_storeu_ps(s + (size_t)i * lds, m0, a[i][0]);
        _mm512_mask_storeu_ps(s + (size_t)i * lds + 16, m1, a[i][1]);
    }
}

/* Output columns j0 .. j0 + 16 nv - 1 (nv <= VALUE_VECS) of nq queries: sum over positions first .. first + n - 1 of
 * weight x value, in attend's order. s: row i (lds apart) query i's softmax weights, still to be scaled by inv[i]. */
static inline __attribute__((always_inline)) void value_columns(int32_t nq, float *const *out, const float *s,
                                                               size_t lds, const float *inv, const uint16_t *v,
                                                               size_t span_stride, int32_t hd, int32_t first,
                                                               int32_t n, int32_t j0, int nv) {
    __m512 o[PBS2P_ATTEND_F16_QUERIES][VALUE_VECS];
    for (int32_t i = 0; i < nq; i++)
        for (int c = 0; c < nv; c++) o[i][c] = _mm512_setzero_ps();
    int32_t p = 0;
    for (; p + 4 <= n; p += 4) {
        __m512 x[4][VALUE_VECS];
        for (int r = 0; r < 4; r++) {
            const uint16_t *row = v + pbs2p_kv_value(span_stride, hd, first + p + r) + j0;
            for (int c = 0; c < nv; c++) x[r][c] = half16(row + 16 * c);
        }
        for (int32_t i = 0; i < nq; i++) {
            const float *si = s + (size_t)i * lds;
            const __m512 w0 = _mm512_set1_ps(si[p] * inv[i]), w1 = _mm512_set1_ps(si[p + 1] * inv[i]);
            const __m512 w2 = _mm512_set1_ps(si[p + 2] * inv[i]), w3 = _mm512_set1_ps(si[p + 3] * inv[i]);
            for (int c = 0; c < nv; c++)
                o[i][c] = _mm512_add_ps(o[i][c], dot4_x16(w0, w1, w2, w3, x[0][c], x[1][c], x[2][c], x[3][c]));
        }
    }
    for (; p < n; p++) {
        __m512 x[VALUE_VECS];
        const uint16_t *row = v + pbs2p_kv_value(span_stride, hd, first + p) + j0;
        for (int c = 0; c < nv; c++) x[c] = half16(row + 16 * c);
        for (int32_t i = 0; i < nq; i++) {
            const __m512 w = _mm512_set1_ps(s[(size_t)i * lds + (size_t)p] * inv[i]);
            for (int c = 0; c < nv; c++) o[i][c] = _mm512_fmadd_ps(w, x[c], o[i][c]);
        }
    }
    for (int32_t i = 0; i < nq; i++)
        for (int c = 0; c < nv; c++) _mm512_storeu_ps(out[i] + j0 + 16 * c, o[i][c]);
}

void pbs2p_attend_f16_avx512(int32_t nq, const float *const *q, float *const *out, const uint16_t *kt,
                             const uint16_t *v, size_t span_stride, int32_t first, int32_t n, int32_t hd, float scale,
                             float *scores, size_t lds) {
    if (hd % 16 != 0) { /* whole vectors of output columns only; such heads take the widening kernel */
        attend_f16(nq, q, out, kt, v, span_stride, first, n, hd, scale, scores, lds);
        return;
    }
    float inv[PBS2P_ATTEND_F16_QUERIES];
    for (int32_t p0 = first; p0 < first + n;) { /* the tiles' parts in view */
        const int32_t end = tile_part_end(p0, first + n);
        score_block(nq, q, kt + pbs2p_kv_key(span_stride, hd, p0), end - p0, hd, scores + (p0 - first), lds);
        p0 = end;
    }
    for (int32_t i = 0; i < nq; i++) inv[i] = softmax_weights(scores + (size_t)i * lds, n, scale);
    for (int32_t j0 = 0; j0 < hd; j0 += 16 * VALUE_VECS) {
        const int nv = (hd - j0) / 16 < VALUE_VECS ? (hd - j0) / 16 : VALUE_VECS;
        switch (nv) { /* a constant count each, so the sums stay in registers */
        case 4: value_columns(nq, out, scores, lds, inv, v, span_stride, hd, first, n, j0, 4); break;
        case 3: value_columns(nq, out, scores, lds, inv, v, span_stride, hd, first, n, j0, 3); break;
        case 2: value_columns(nq, out, scores, lds, inv, v, span_stride, hd, first, n, j0, 2); break;
        default: value_columns(nq, out, scores, lds, inv, v, span_stride, hd, first, n, j0, 1);
        }
    }
}

void pbs2p_widen_avx512(const uint16_t *src, float *dst, int32_t n) { widen(src, dst, n); }

/* dense_avx512.c — AVX-512 row dots of the F16 matrices (head, embedding): hardware float16 conversion, FMA. The
 * other dense types are integer products (qdense_avx2.c serves this variant too). */
#include "internal.h"

#include <immintrin.h>

/* Row r as float32 into out (exactly pbs2p_dense_row's values). */
static void decode_row(const pbs2p_dense *W, int32_t r, float *out) {
    const uint8_t *p = W->data + (size_t)r * W->row_bytes;
    const int32_t K = W->cols;
    int32_t j = 0;
    for (; j + 16 <= K; j += 16)
        _mm512_storeu_ps(out + j, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(p + 2 * (size_t)j))));
    for (; j < K; j++) out[j] = pbs2p_half_to_float((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
}

/* Two 16-lane running sums (k = 32i + lane, 32i + 16 + lane), a masked tail, one reduction. */
static float dot(const float *x, const float *y, int32_t n) {
    __m512 a0 = _mm512_setzero_ps(), a1 = _mm512_setzero_ps();
    int32_t k = 0;
    for (; k + 32 <= n; k += 32) {
        a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k), _mm512_loadu_ps(y + k), a0);
        a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + k + 16), _mm512_loadu_ps(y + k + 16), a1);
    }
    for (; k < n; k += 16) {
        const __mmask16 m = n - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - k)) - 1u);
        a0 = _mm512_fmadd_ps(_mm512_maskz_loadu_ps(m, x + k), _mm512_maskz_loadu_ps(m, y + k), a0);
    }
    return _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
}

/* Rows ahead whose line at the same column f16_rows4 prefetches: a decode step reads the rows (a tied F16 head: 57 MB
 * on SmolLM2) once, as short runs the hardware prefetchers barely follow; 49152 x 576 from memory, 1 and 2 threads:
 * 10-11 -> 13-14 and 19-22 -> 23-28 GB/s. */
#define F16_AHEAD 8

/* Four F16 rows against one token, converted in registers: each row's sum is formed exactly as dot() forms it
 * (same lanes, same tail, same reduction), the four chains only interleave to hide the FMA latency. */
static void f16_rows4(const uint8_t *p, size_t row_bytes, const float *x, int32_t K, float *y) {
    __m512 a[4][2];
    for (int i = 0; i < 4; i++) a[i][0] = a[i][1] = _mm512_setzero_ps();
    int32_t k = 0;
    for (; k + 32 <= K; k += 32) {
        const __m512 x0 = _mm512_loadu_ps(x + k), x1 = _mm512_loadu_ps(x + k + 16);
        for (int i = 0; i < 4; i++) {
            const uint8_t *q = p + (size_t)i * row_bytes + 2 * (size_t)k;
            __builtin_prefetch(q + F16_AHEAD * row_bytes, 0, 0); /* never faults, even past the matrix */
            a[i][0] = _mm512_fmadd_ps(x0, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)q)), a[i][0]);
            a[i][1] = _mm512_fmadd_ps(x1, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(q + 32))), a[i][1]);
        }
    }
    float w[16];
    for (; k < K; k += 16) {
        const int32_t n = K - k >= 16 ? 16 : K - k;
        const __mmask16 m = n == 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << n) - 1u);
        const __m512 xv = _mm512_maskz_loadu_ps(m, x + k);
        for (int i = 0; i < 4; i++) {
            const uint8_t *q = p + (size_t)i * row_bytes + 2 * (size_t)k;
            if (n == 16) {
                a[i][0] = _mm512_fmadd_ps(xv, _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)q)), a[i][0]);
            } else {
                for (int32_t j = 0; j < n; j++) w[j] = pbs2p_half_to_float((uint16_t)(q[2 * j] | q[2 * j + 1] << 8));
                a[i][0] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w), a[i][0]);
            }
        }
    }
    for (int i = 0; i < 4; i++) y[i] = _mm512_reduce_add_ps(_mm512_add_ps(a[i][0], a[i][1]));
}

/* TILE_R rows (decoded, K apart) x TILE_T tokens: each of the 12 sums formed exactly as dot() forms it (a0 takes
 * columns 32i..32i+15 and the masked tail, a1 32i+16..32i+31, one reduction of a0 + a1). */
#define TILE_R 4
#define TILE_T 3
static void tile(const float *w, int32_t K, const float *x, size_t ldx, float *y) {
    __m512 a0[TILE_R][TILE_T], a1[TILE_R][TILE_T];
    for (int i = 0; i < TILE_R; i++)
        for (int t = 0; t < TILE_T; t++) a0[i][t] = a1[i][t] = _mm512_setzero_ps();
    int32_t k = 0;
    for (; k + 32 <= K; k += 32) {
        __m512 w0[TILE_R], w1[TILE_R];
        for (int i = 0; i < TILE_R; i++) {
            w0[i] = _mm512_loadu_ps(w + (size_t)i * K + k);
            w1[i] = _mm512_loadu_ps(w + (size_t)i * K + k + 16);
        }
        for (int t = 0; t < TILE_T; t++) {
            const __m512 x0 = _mm512_loadu_ps(x + t * ldx + k), x1 = _mm512_loadu_ps(x + t * ldx + k + 16);
            for (int i = 0; i < TILE_R; i++) {
                a0[i][t] = _mm512_fmadd_ps(x0, w0[i], a0[i][t]);
                a1[i][t] = _mm512_fmadd_ps(x1, w1[i], a1[i][t]);
            }
        }
    }
    for (; k < K; k += 16) {
        const __mmask16 m = K - k >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (K - k)) - 1u);
        for (int t = 0; t < TILE_T; t++) {
            const __m512 xv = _mm512_maskz_loadu_ps(m, x + t * ldx + k);
            for (int i = 0; i < TILE_R; i++)
                a0[i][t] = _mm512_fmadd_ps(xv, _mm512_maskz_loadu_ps(m, w + (size_t)i * K + k), a0[i][t]);
        }
    }
    for (int i = 0; i < TILE_R; i++)
        for (int t = 0; t < TILE_T; t++) y[i * TILE_T + t] = _mm512_reduce_add_ps(_mm512_add_ps(a0[i][t], a1[i][t]));
}

#include "dense_tile.h"

void pbs2p_dense_rows_avx512(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                             float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch) {
    int32_t r = row0;
    if (n_tokens == 1) /* decoding: one pass over the rows, no scratch round trip */
        for (; r + 4 <= row1; r += 4) {
            float y[4];
            f16_rows4(W->data + (size_t)r * W->row_bytes, W->row_bytes, X, W->cols, y);
            for (int i = 0; i < 4; i++) Y[r + i] = y[i];
        }
    dense_rows(W, X, n_tokens, ldx, Y, ldy, r, row1, scratch);
}

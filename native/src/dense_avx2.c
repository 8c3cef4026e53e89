/* dense_avx2.c — AVX2 row dots of the F16 matrices (head, embedding): F16C conversion, FMA. The other dense types
 * are integer products (qdense_avx2.c). */
#include "internal.h"

#include <immintrin.h>

/* Row r as float32 into out (exactly pbs2p_dense_row's values). */
static void decode_row(const pbs2p_dense *W, int32_t r, float *out) {
    const uint8_t *p = W->data + (size_t)r * W->row_bytes;
    const int32_t K = W->cols;
    int32_t j = 0;
    for (; j + 8 <= K; j += 8)
        _mm256_storeu_ps(out + j, _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)(p + 2 * (size_t)j))));
    for (; j < K; j++) out[j] = pbs2p_half_to_float((uint16_t)(p[2 * j] | p[2 * j + 1] << 8));
}

static inline float hsum(__m256 v) {
    __m128 s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
    s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    return _mm_cvtss_f32(_mm_add_ss(s, _mm_movehdup_ps(s)));
}

/* Two 8-lane running sums (k = 16i + lane, 16i + 8 + lane), one reduction, the tail in order. */
static float dot(const float *x, const float *y, int32_t n) {
    __m256 a0 = _mm256_setzero_ps(), a1 = _mm256_setzero_ps();
    int32_t k = 0;
    for (; k + 16 <= n; k += 16) {
        a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k), a0);
        a1 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k + 8), _mm256_loadu_ps(y + k + 8), a1);
    }
    for (; k + 8 <= n; k += 8) a0 = _mm256_fmadd_ps(_mm256_loadu_ps(x + k), _mm256_loadu_ps(y + k), a0);
    float sum = hsum(_mm256_add_ps(a0, a1));
    for (; k < n; k++) sum += x[k] * y[k];
    return sum;
}

/* TILE_R rows (decoded, K apart) x TILE_T tokens: each of the 6 sums formed exactly as dot() forms it (a0 takes
 * columns 16i..16i+7 and an 8-wide tail, a1 16i+8..16i+15, one reduction of a0 + a1, the rest in order); 12 running
 * sums fit AVX2's 16 registers beside one row vector per tile row and a token vector. */
#define TILE_R 2
#define TILE_T 3
static void tile(const float *w, int32_t K, const float *x, size_t ldx, float *y) {
    __m256 a0[TILE_R][TILE_T], a1[TILE_R][TILE_T];
    for (int i = 0; i < TILE_R; i++)
        for (int t = 0; t < TILE_T; t++) a0[i][t] = a1[i][t] = _mm256_setzero_ps();
    int32_t k = 0;
    for (; k + 16 <= K; k += 16)
        for (int h = 0; h < 2; h++) {
            __m256 wv[TILE_R];
            for (int i = 0; i < TILE_R; i++) wv[i] = _mm256_loadu_ps(w + (size_t)i * K + k + 8 * h);
            for (int t = 0; t < TILE_T; t++) {
                const __m256 xv = _mm256_loadu_ps(x + t * ldx + k + 8 * h);
                for (int i = 0; i < TILE_R; i++)
                    if (h) a1[i][t] = _mm256_fmadd_ps(xv, wv[i], a1[i][t]);
                    else a0[i][t] = _mm256_fmadd_ps(xv, wv[i], a0[i][t]);
            }
        }
    for (; k + 8 <= K; k += 8)
        for (int t = 0; t < TILE_T; t++) {
            const __m256 xv = _mm256_loadu_ps(x + t * ldx + k);
            for (int i = 0; i < TILE_R; i++)
                a0[i][t] = _mm256_fmadd_ps(xv, _mm256_loadu_ps(w + (size_t)i * K + k), a0[i][t]);
        }
    for (int i = 0; i < TILE_R; i++)
        for (int t = 0; t < TILE_T; t++) {
            float sum = hsum(_mm256_add_ps(a0[i][t], a1[i][t]));
            for (int32_t j = k; j < K; j++) sum += x[t * ldx + j] * w[(size_t)i * K + j];
            y[i * TILE_T + t] = sum;
        }
}

#include "dense_tile.h"

void pbs2p_dense_rows_avx2(const pbs2p_dense *W, const float *X, size_t n_tokens, size_t ldx,
                           float *Y, size_t ldy, int32_t row0, int32_t row1, float *scratch) {
    dense_rows(W, X, n_tokens, ldx, Y, ldy, row0, row1, scratch);
}

/* kernel_q8_tokens_avx2.c — a prompt's products of packed layers on int8 activations (internal.h) with AVX2: the
 * plane words expanded to 0/1 bytes once, then multiplied by each token's codes with vpmaddubsw.
 *
 * kernel_avx2.c's products look up float tables, token by token: ~64 vector operations per 16 rows x 32 columns x
 * plane for every token, and a prompt of a binary layer ran at 0.75-0.81x llama.cpp's on AVX2 alone. Here the 8
 * rows of a register are 8 lanes; a plane word's 8 column quads become 8 registers of bytes (byte j of lane r = bit
 * 4k + j of row r's word: a vpshufb copies the word's byte to the lane's 4 bytes, an AND with the bit and a min with
 * 1 make it 0 or 1) once per word, shared by up to TOKENS tokens; for each token, quad k's register times the token's 4
 * codes of that quad broadcast (vpmaddubsw: 0/1 times int8, pairs summed in int16), the 8 products added in int16
 * (|sum| <= 16 x 127), and vpmaddwd against ones gives each row's exact integer sum of the word. After that every
 * token's lanes run the reference's float operations (kernel_q8_ref.c): s = fma(sum, d, s) over the plane's words
 * in order, y = fma(coef, s, y) over (g, p): the same bits for any batch and any variant. A kept_signs layer's +1 words
 * (internal.h) are rebuilt by pdep before they are expanded, as kernel_avx2.c's are. */
#include "internal.h"
#include "kept_signs_x86.h"

#ifdef PBS2P_HAVE_AVX2 /* else an empty unit */
#include <immintrin.h>

/* Tokens that share each expanded word: the expansion costs about what one token's products do. 128 tokens through
 * SmolLM2's 210 compact 4:8 layers, one thread, AVX2 forced on an AMD EPYC: float tables 389-413 ms; this kernel
 * with 4 tokens 361-373, 8 312-338, 16 274-328. */
#define TOKENS 16

/* The 8 quads of the 8 plane words in v as 0/1 bytes (see above). */
static inline void expand_word(__m256i v, __m256i e[8]) {
    /* byte j of each lane -> the lane's 4 bytes, then bit 2k' (low quad) or bit 4 + k' (high quad) of it */
    static const int8_t spread[4][32] __attribute__((aligned(32))) = {
#define S(b) b, b, b, b, 4 + b, 4 + b, 4 + b, 4 + b, 8 + b, 8 + b, 8 + b, 8 + b, 12 + b, 12 + b, 12 + b, 12 + b
        {S(0), S(0)}, {S(1), S(1)}, {S(2), S(2)}, {S(3), S(3)}
#undef S
    };
    const __m256i lo_bits = _mm256_set1_epi32(0x08040201), hi_bits = _mm256_set1_epi32((int)0x80402010u);
    const __m256i one = _mm256_set1_epi8(1);
    for (int j = 0; j < 4; j++) {
        const __m256i b = _mm256_shuffle_epi8(v, _mm256_load_si256((const __m256i *)spread[j]));
        e[2 * j] = _mm256_min_epu8(_mm256_and_si256(b, lo_bits), one);
        e[2 * j + 1] = _mm256_min_epu8(_mm256_and_si256(b, hi_bits), one);
    }
}

/* The 8 rows' exact sums of one word (expanded e) over 32 codes q. */
static inline __m256i word_sum(const __m256i e[8], const int8_t *q) {
    int32_t c;
    __builtin_memcpy(&c, q, 4);
    __m256i s = _mm256_maddubs_epi16(e[0], _mm256_set1_epi32(c));
    for (int k = 1; k < 8; k++) {
        __builtin_memcpy(&c, q + 4 * k, 4);
        s = _mm256_add_epi16(s, _mm256_maddubs_epi16(e[k], _mm256_set1_epi32(c)));
    }
    return _mm256_madd_epi16(s, _mm256_set1_epi16(1));
}

/* A kept_signs layer's (internal.h) +1 words of 8 rows of a row block's word (kept and signs at the rows' first), as
 * lanes: called, not inlined, as this unit is compiled without BMI2 (kept_signs_x86.h); built in registers, as a
 * vector load of four scalar stores would wait for them to retire. */
static __attribute__((noinline)) PBS2P_BMI2 __m256i plus_words8(const uint32_t *kept, const uint16_t *signs) {
    return _mm256_set_epi64x((long long)plus_pair(kept, signs, 3), (long long)plus_pair(kept, signs, 2),
                             (long long)plus_pair(kept, signs, 1), (long long)plus_pair(kept, signs, 0));
}

/* Rows [8 h, 8 h + 8) of the row block at `first` (lanes past its nr rows are 0) for tt <= TOKENS tokens: y[t]. */
static void half_block(const struct pbs2p_layer *L, size_t first, int h, const pbs2p_q8_acts *A, size_t t0,
                       size_t tt, __m256 y[TOKENS]) {
    const size_t G = (size_t)L->groups, W = (size_t)L->words, P = (size_t)L->planes;
    const size_t nr = pbs2p_block_rows(L, first), have = nr > 8 * (size_t)h ? nr - 8 * (size_t)h : 0;
    static const int32_t ones_then_zeros[16] = {-1, -1, -1, -1, -1, -1, -1, -1};
    const __m256i lanes = _mm256_loadu_si256((const __m256i *)(ones_then_zeros + 8 - (have < 8 ? have : 8)));
    const uint32_t *bb = pbs2p_block_bits(L, first) + 8 * (size_t)h;
    const float *cb = L->coef + first * G * P + 8 * (size_t)h;
    pbs2p_q8_acts At[TOKENS];
    for (size_t t = 0; t < tt; t++) {
        At[t] = pbs2p_q8_acts_at(A, t0 + t);
        y[t] = _mm256_setzero_ps();
    }
    for (size_t g = 0; g < G; g++)
        for (size_t p = 0; p < P; p++) {
            size_t lo, hi;
            pbs2p_plane_words(L, g, p, &lo, &hi);
            const uint32_t *b = bb + pbs2p_plane_offset(L, g, p) * nr; /* word w at b + (w - lo) * nr */
            __m256 s[TOKENS];
            for (size_t t = 0; t < tt; t++) s[t] = _mm256_setzero_ps();
            /* kept_signs: plane 1 is rebuilt from plane 0's words (b) and the signs (lanes past nr read the slack) */
            const uint16_t *sg = L->kept_signs && p == 1 ? pbs2p_block_signs(L, first) + 8 * (size_t)h + g * W * nr
                                                         : NULL;
            for (size_t w = lo; w < hi; w++, b += nr) {
                pbs2p_stream_ahead(b);
                __m256i e[8];
                expand_word(sg ? _mm256_and_si256(plus_words8(b, sg + (w - lo) * nr), lanes)
                               : _mm256_maskload_epi32((const int *)b, lanes), e);
                const size_t blk = ((size_t)L->plane_xs[p] * G + g) * W + w;
                for (size_t t = 0; t < tt; t++) {
                    const __m256i I = word_sum(e, At[t].q + blk * PBS2P_ACT_BLOCK);
                    s[t] = _mm256_fmadd_ps(_mm256_cvtepi32_ps(I), _mm256_set1_ps(At[t].d[blk]), s[t]);
                }
            }
            const __m256 c = _mm256_maskload_ps(cb + (g * P + p) * nr, lanes);
            for (size_t t = 0; t < tt; t++) y[t] = _mm256_fmadd_ps(c, s[t], y[t]);
        }
}

void pbs2p_rows_q8_tokens_avx2(const struct pbs2p_layer *L, const pbs2p_q8_acts *A, size_t n_tokens, float *Y,
                               size_t ldy, int32_t row0, int32_t row1) {
    const size_t r0 = (size_t)row0, r1 = (size_t)row1;
    for (size_t t0 = 0; t0 < n_tokens; t0 += TOKENS) {
        const size_t tt = n_tokens - t0 < TOKENS ? n_tokens - t0 : TOKENS;
        for (size_t first = r0 - r0 % PBS2P_ROW_BLOCK; first < r1; first += PBS2P_ROW_BLOCK)
            for (int h = 0; h < 2 && first + 8 * (size_t)h < r1; h++) {
                if (first + 8 * (size_t)h + 8 <= r0 || 8 * (size_t)h >= pbs2p_block_rows(L, first)) continue;
                __m256 y[TOKENS];
                half_block(L, first, h, A, t0, tt, y);
                for (size_t t = 0; t < tt; t++) {
                    float v[8];
                    _mm256_storeu_ps(v, y[t]);
                    for (size_t l = 0; l < 8; l++) {
                        const size_t i = first + 8 * (size_t)h + l;
                        if (i >= r0 && i < r1) Y[(t0 + t) * ldy + i] = v[l];
                    }
                }
            }
    }
}
#endif

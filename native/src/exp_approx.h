/* exp_approx.h — e^x in plain float32 operations that a vectorizer turns into SIMD code (libm's expf is a call per
 * element): the softmax weights of attention. Cody-Waite reduction x = n ln2 + r (|r| <= ln2 / 2, ln2 split in two so n ln2
 * is exact), e^r by Cephes' degree-6 polynomial (about 1 ulp), 2^n built in the exponent bits. x is clamped to
 * [-87, 88], where 2^n stays a normal float: e^x below e^-87 (1.6e-38) comes out as about that, not 0 or a
 * subnormal, and above e^88 as 1.65e38, not infinity — no use of it here can tell. A NaN gives NaN: the comparisons
 * of the clamp let it through and the polynomial keeps it. */
#ifndef PBS2P_EXP_APPROX_H
#define PBS2P_EXP_APPROX_H

#include <stdint.h>
#include <string.h>

static inline float exp_approx(float x) {
    x = x < -87.0f ? -87.0f : x;
    x = x > 88.0f ? 88.0f : x;
    const float shifter = 12582912.0f;       /* 1.5 * 2^23: t's low mantissa bits hold n = round(x / ln2) */
    const float t = x * 1.44269504088896341f + shifter;
    const float n = t - shifter;
    const float r = (x - n * 0.693359375f) - n * -2.12194440e-4f;
    float p = 1.9875691500e-4f;
    p = p * r + 1.3981999507e-3f;
    p = p * r + 8.3334519073e-3f;
    p = p * r + 4.1665795894e-2f;
    p = p * r + 1.6666665459e-1f;
    p = p * r + 5.0000001201e-1f;
    p = p * r * r + r + 1.0f;
    uint32_t bits;
    memcpy(&bits, &t, sizeof bits);
    bits = (bits - 0x4B400000u + 127u) << 23; /* n + 127 in the exponent: 2^n */
    float two_n;
    memcpy(&two_n, &bits, sizeof two_n);
    return p * two_n;
}

#endif

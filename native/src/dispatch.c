/* dispatch.c — picks the kernel variant at run time: CPU feature detection, PBS2P_KERNEL, pbs2p_kernel_select. */
#include "internal.h"

#include <pthread.h>
#if defined(PBS2P_HAVE_AVX2) || defined(PBS2P_HAVE_AVX512)
#include <cpuid.h>
#endif
#include <stdlib.h>
#include <string.h>
#ifdef PBS2P_HAVE_NEON_DOTPROD
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

typedef struct variant {
    const char *name;
    pbs2p_rows_fn gemv, gemm;
    pbs2p_dense_fn dense;
    pbs2p_qdense_fn qdense;
    pbs2p_attend_fn attend;
    pbs2p_attend_block_fn attend_block;
    pbs2p_attend_f16_fn attend_f16;
    pbs2p_widen_fn widen;
    int (*cpu_has)(void);
    pbs2p_qdense_fn qdense_ext;  /* replaces qdense where ext_has() (an extension beyond cpu_has's); NULL: none */
    int (*ext_has)(void);
    pbs2p_rows_q8_fn q8;         /* packed layers on int8 activations */
    pbs2p_rows_q8_fn q8_ext;     /* replaces q8 where q8_ext_has(); NULL: none */
    int (*q8_ext_has)(void);
    pbs2p_q8_quantize_fn quantize; /* the activations of the integer products (cpu_has's instructions only) */
} variant;

static int always(void) { return 1; }
#if defined(PBS2P_HAVE_AVX2) || defined(PBS2P_HAVE_AVX512)
/* F16C (CPUID leaf 1, ECX bit 29) for the dense rows' float16 conversion; every AVX2 CPU has it, but a virtual
 * machine may hide it. Read directly: clang's __builtin_cpu_supports does not know "f16c". */
static int has_f16c(void) {
    unsigned a, b, c, d;
    return __get_cpuid(1, &a, &b, &c, &d) && (c & (1u << 29));
}
static int has_avx2(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && has_f16c();
}
static int has_avx512(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw")
#ifdef PBS2P_HAVE_AVX2
           && has_avx2() /* its integer dense products are the AVX2 ones */
#endif
        ;
}
#endif
#ifdef PBS2P_HAVE_AVX512_VNNI
static int has_avx512_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni");
}
#endif
#ifdef PBS2P_HAVE_AVX2
/* CPUID's vendor string is "AuthenticAMD", or "HygonGenuine" (Hygon's cores are AMD's Zen) where hygon is set. */
static int cpu_vendor_amd(int hygon) {
    unsigned a, b, c, d;
    if (!__get_cpuid(0, &a, &b, &c, &d)) return 0;
    return (b == 0x68747541u && d == 0x69746e65u && c == 0x444d4163u) ||
           (hygon && b == 0x6f677948u && d == 0x6e65476eu && c == 0x656e6975u);
}

/* BMI2's pdep in a cycle or so: Intel's cores since Haswell and AMD's since Zen 3 (family 0x19). AMD's earlier cores
 * (Excavator, Zen, Zen 2: family 0x15 to 0x17; Hygon's 0x18) run it as microcode, a loop over the mask's set bits
 * (tens to hundreds of cycles), so a kept_signs layer's 16 pdeps a word would cost more than its quarter fewer bytes
 * save: there the AVX2 products hold plane 1 as words. */
static int fast_pdep(void) {
    __builtin_cpu_init();
    if (!__builtin_cpu_supports("bmi2")) return 0;
    if (!cpu_vendor_amd(1)) return 1;
    unsigned a, b, c, d;
    if (!__get_cpuid(1, &a, &b, &c, &d)) return 0;
    const unsigned base = a >> 8 & 0xFu, family = base == 0xFu ? base + (a >> 20 & 0xFFu) : base;
    return family >= 0x19u;
}
#endif

#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX2)
/* AMD's cores (CPUID vendor "AuthenticAMD"; Zen 4 is the first with AVX-512) run a 512-bit gather as many
 * micro-ops. The VNNI products gather every row's codes (qdense_avx512.c), which a prompt amortizes over its tokens
 * and one token does not: on an AMD EPYC a Llama-3.2-1B-shape file (its tied Q4_0 head is half of what a token reads)
 * decoded at 26 tok/s with them and 44 with the AVX2 variant, 2 threads. */
static int slow_gathers(void) { return cpu_vendor_amd(0); }
/* The VNNI products from AVX2_LANES_MIN_TOKENS tokens on; for fewer, AVX2's row loops (qdense_avx2.c, which gather
 * nothing below that count). Both give the reference's bits, so the switch changes no output. */
static void qdense_light_gathers(const pbs2p_dense *W, const pbs2p_q8_acts *A, size_t n_tokens, float *Y, size_t ldy,
                                 int32_t row0, int32_t row1) {
    (n_tokens < AVX2_LANES_MIN_TOKENS ? pbs2p_qdense_rows_avx2 : pbs2p_qdense_rows_avx512)(W, A, n_tokens, Y, ldy, row0,
                                                                                          row1);
}
#endif

#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX512_VBMI)
static int has_avx512_vbmi_vnni(void) {
    __builtin_cpu_init();
    return __builtin_cpu_supports("avx512vnni") && __builtin_cpu_supports("avx512vbmi") && __builtin_cpu_supports("bmi2");
}
#endif

#ifdef PBS2P_HAVE_NEON_DOTPROD
/* Armv8.2's dot product instructions (sdot), as Linux reports them. */
static int has_dotprod(void) { return (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0; }
#endif

/* Compiled variants, fastest first: the automatic choice is the first this CPU runs. */
static const variant variants[] = {
#ifdef PBS2P_HAVE_AVX512
    {"avx512", pbs2p_rows_avx512, pbs2p_gemm_rows_avx512, pbs2p_dense_rows_avx512,
#ifdef PBS2P_HAVE_AVX2 /* the integer dense products: AVX2's (256-bit) unless the CPU has VNNI */
     pbs2p_qdense_rows_avx2,
#else
     pbs2p_qdense_rows_ref,
#endif
     pbs2p_attend_avx512, pbs2p_attend_block_avx512, pbs2p_attend_f16_avx512, pbs2p_widen_avx512, has_avx512,
#ifdef PBS2P_HAVE_AVX512_VNNI
     pbs2p_qdense_rows_avx512, has_avx512_vnni,
#else
     NULL, NULL,
#endif
#ifdef PBS2P_HAVE_AVX2
     pbs2p_rows_q8_avx2,
#else
     pbs2p_rows_q8_ref,
#endif
#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX512_VBMI)
     pbs2p_rows_q8_avx512, has_avx512_vbmi_vnni,
#else
     NULL, NULL,
#endif
     pbs2p_q8_acts_quantize_avx512},
#endif
#ifdef PBS2P_HAVE_AVX2
    {"avx2", pbs2p_rows_avx2, pbs2p_gemm_rows_avx2, pbs2p_dense_rows_avx2, pbs2p_qdense_rows_avx2, pbs2p_attend_avx2,
     pbs2p_attend_block_avx2, pbs2p_attend_f16_avx2, pbs2p_widen_avx2, has_avx2, NULL, NULL, pbs2p_rows_q8_avx2, NULL,
     NULL, pbs2p_q8_acts_quantize_ref},
#endif
#ifdef PBS2P_HAVE_NEON
    {"neon", pbs2p_rows_neon, pbs2p_gemm_rows_neon, pbs2p_dense_rows_neon, pbs2p_qdense_rows_neon, pbs2p_attend_neon,
     pbs2p_attend_block_neon, pbs2p_attend_f16_neon, pbs2p_widen_neon, always,
#ifdef PBS2P_HAVE_NEON_DOTPROD
     pbs2p_qdense_rows_dotprod, has_dotprod,
#else
     NULL, NULL,
#endif
     pbs2p_rows_q8_neon, NULL, NULL, pbs2p_q8_acts_quantize_ref},
#endif
    {"ref", pbs2p_rows_ref, pbs2p_rows_ref, pbs2p_dense_rows_ref, pbs2p_qdense_rows_ref, pbs2p_attend_ref,
     pbs2p_attend_block_ref, pbs2p_attend_f16_ref, pbs2p_widen_ref, always, NULL, NULL, pbs2p_rows_q8_ref, NULL, NULL,
     pbs2p_q8_acts_quantize_ref},
};
#define N_VARIANTS (sizeof variants / sizeof variants[0])

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static int initialised;
static const variant *current;       /* NULL: the forced variant is unavailable */
static pbs2p_qdense_fn current_qdense; /* current's qdense, or its qdense_ext where this CPU has the extension */
static pbs2p_rows_q8_fn current_q8;     /* current's q8, or its q8_ext likewise */
static int current_q8_kept_signs;      /* current_q8 reads kept-order signs (reads_kept_signs) */
static char unavailable[32];         /* name of that variant */

static const variant *find(const char *name) {
    for (size_t v = 0; v < N_VARIANTS; v++)
        if (strcmp(variants[v].name, name) == 0) return &variants[v];
    return NULL;
}

static int known_name(const char *name) {
    return !strcmp(name, "ref") || !strcmp(name, "avx2") || !strcmp(name, "avx512") || !strcmp(name, "neon");
}

/* The variant's integer dense products on this CPU: decided once, when the variant is chosen (not per product). */
static pbs2p_qdense_fn qdense_of(const variant *v) {
    if (!v->qdense_ext || !v->ext_has()) return v->qdense;
#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX2)
    if (v->qdense_ext == pbs2p_qdense_rows_avx512 && slow_gathers()) return qdense_light_gathers;
#endif
    return v->qdense_ext;
}

/* The variant's products of packed layers on this CPU, decided once like qdense_of's. */
static pbs2p_rows_q8_fn q8_of(const variant *v) { return v->q8_ext && v->q8_ext_has() ? v->q8_ext : v->q8; }

/* Whether q8 reads layers with kept-order signs at speed (internal.h): a model prepares its layers so where it does.
 * Decided once, when the variant is chosen: CPUID exits to the hypervisor in a virtual machine (on this VM a product
 * that asked for every layer ran 1.5 ms slower). */
static int reads_kept_signs(pbs2p_rows_q8_fn q8) {
    int reads = 0;
#if defined(PBS2P_HAVE_AVX512_VNNI) && defined(PBS2P_HAVE_AVX512_VBMI)
    reads |= q8 == pbs2p_rows_q8_avx512; /* chosen only with BMI2 (has_avx512_vbmi_vnni), fast on every such core */
#endif
#ifdef PBS2P_HAVE_AVX2
    reads |= q8 == pbs2p_rows_q8_avx2 && fast_pdep();
#endif
#ifdef PBS2P_HAVE_NEON
    reads |= q8 == pbs2p_rows_q8_neon;
#endif
    (void)q8;
    return reads;
}

/* Caller holds lock. name NULL or "" = automatic. */
static pbs2p_status choose(const char *name) {
    if (name && *name) {
        const variant *v = find(name);
        if (!v || !v->cpu_has()) {
            current = NULL;
            strncpy(unavailable, name, sizeof unavailable - 1);
            unavailable[sizeof unavailable - 1] = '\0';
            if (!known_name(name))
                return pbs2p_fail(PBS2P_ERR_NO_KERNEL, "unknown kernel variant '%s' (use ref, avx2, avx512 or neon)", unavailable);
            return pbs2p_fail(PBS2P_ERR_NO_KERNEL, "kernel variant '%s' is %s", unavailable,
                              v ? "not supported by this CPU" : "not compiled into this library");
        }
        current = v;
        current_qdense = qdense_of(v);
        current_q8 = q8_of(v);
        current_q8_kept_signs = reads_kept_signs(current_q8);
        return PBS2P_OK;
    }
    for (size_t v = 0; v < N_VARIANTS; v++)
        if (variants[v].cpu_has()) { current = &variants[v]; break; }
    current_qdense = qdense_of(current); /* ref runs everywhere: there is always one */
    current_q8 = q8_of(current);
    current_q8_kept_signs = reads_kept_signs(current_q8);
    return PBS2P_OK;
}

static void ensure_initialised(void) {
    if (!initialised) {
        choose(getenv("PBS2P_KERNEL"));
        initialised = 1;
    }
}

int pbs2p_kernel_current(pbs2p_kernels *out) {
    pthread_mutex_lock(&lock);
    ensure_initialised();
    const variant *v = current;
    const pbs2p_qdense_fn qdense = current_qdense;
    const pbs2p_rows_q8_fn q8 = current_q8;
    const int q8_kept_signs = current_q8_kept_signs;
    if (!v) {
        if (!known_name(unavailable))
            pbs2p_fail(PBS2P_ERR_NO_KERNEL, "PBS2P_KERNEL='%s' is not a kernel variant (use ref, avx2, avx512 or neon)", unavailable);
        else
            pbs2p_fail(PBS2P_ERR_NO_KERNEL, "kernel variant '%s' (forced by PBS2P_KERNEL or pbs2p_kernel_select) "
                       "is not available on this CPU/build", unavailable);
    }
    pthread_mutex_unlock(&lock);
    if (v) {
        *out = (pbs2p_kernels){v->gemv, v->gemm, v->dense, qdense, v->attend, v->attend_block, v->attend_f16,
                                v->widen, q8, v->quantize, q8_kept_signs};
    }
    return v != NULL;
}

const char *pbs2p_kernel_name(void) {
    pthread_mutex_lock(&lock);
    ensure_initialised();
    const char *name = current ? current->name : NULL;
    pthread_mutex_unlock(&lock);
    return name;
}

size_t pbs2p_kernel_variants(const char **names, size_t cap) {
    if (names)
        for (size_t v = 0; v < N_VARIANTS && v < cap; v++) names[v] = variants[v].name;
    return N_VARIANTS;
}

int pbs2p_kernel_available(const char *name) {
    if (!name) return 0;
    const variant *v = find(name);
    return v && v->cpu_has();
}

pbs2p_status pbs2p_kernel_select(const char *name) {
    pthread_mutex_lock(&lock);
    initialised = 1;
    pbs2p_status st = choose(name ? name : getenv("PBS2P_KERNEL"));
    pthread_mutex_unlock(&lock);
    return st;
}

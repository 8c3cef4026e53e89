/* gguf.c — opening a GGUF file: map it read-only, then validate the header, every key-value and every tensor
 * info against the file size before anything is used (layout and limits: pbs2p.h, "GGUF files"). */
#define _POSIX_C_SOURCE 200809L /* O_CLOEXEC, XSI strerror_r */
#define _DEFAULT_SOURCE         /* madvise, MADV_DONTNEED (posix_madvise's DONTNEED is a no-op in glibc) */
#include "gguf_internal.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define MIN_KV_BYTES 14      /* key length 8 + key >= 1 + value type 4 + value >= 1 */
#define MIN_TENSOR_BYTES 33  /* name length 8 + name >= 1 + n_dims 4 + ne[0] 8 + type 4 + offset 8 */
#define SHOWN 80             /* bytes of a name quoted in an error message */

#define TRY(expr) do { pbs2p_status st_ = (expr); if (st_ != PBS2P_OK) return st_; } while (0)

/* ---- ggml tensor types ---- */

/* ggml's ids, names and block geometry (elements, bytes); block == 0: known, but refused by this reader. */
typedef struct ggml_type_row { int32_t id; const char *name; uint32_t block, bytes; } ggml_type_row;
static const ggml_type_row GGML_TYPES[] = {
    {0, "F32", 1, 4},      {1, "F16", 1, 2},      {2, "Q4_0", 32, 18},   {3, "Q4_1", 32, 20},
    {6, "Q5_0", 32, 22},   {7, "Q5_1", 32, 24},   {8, "Q8_0", 32, 34},   {9, "Q8_1", 0, 0},
    {10, "Q2_K", 256, 84}, {11, "Q3_K", 256, 110}, {12, "Q4_K", 256, 144}, {13, "Q5_K", 256, 176},
    {14, "Q6_K", 256, 210}, {15, "Q8_K", 0, 0},   {16, "IQ2_XXS", 0, 0}, {17, "IQ2_XS", 0, 0},
    {18, "IQ3_XXS", 0, 0}, {19, "IQ1_S", 0, 0},   {20, "IQ4_NL", 0, 0},  {21, "IQ3_S", 0, 0},
    {22, "IQ2_S", 0, 0},   {23, "IQ4_XS", 0, 0},  {24, "I8", 1, 1},      {25, "I16", 1, 2},
    {26, "I32", 1, 4},     {27, "I64", 1, 8},     {28, "F64", 1, 8},     {29, "IQ1_M", 0, 0},
    {30, "BF16", 1, 2},    {34, "TQ1_0", 0, 0},   {35, "TQ2_0", 0, 0},   {39, "MXFP4", 0, 0},
};

static const ggml_type_row *ggml_type_row_of(int32_t type) {
    for (size_t k = 0; k < sizeof GGML_TYPES / sizeof GGML_TYPES[0]; k++)
        if (GGML_TYPES[k].id == type) return &GGML_TYPES[k];
    return NULL;
}

int pbs2p_ggml_type_size(int32_t type, size_t *block_elems, size_t *block_bytes) {
    const ggml_type_row *r = ggml_type_row_of(type);
    if (!r || r->block == 0) return 0;
    if (block_elems) *block_elems = r->block;
    if (block_bytes) *block_bytes = r->bytes;
    return 1;
}

const char *pbs2p_ggml_type_name(int32_t type) {
    const ggml_type_row *r = ggml_type_row_of(type);
    return r ? r->name : NULL;
}

/* ---- reading fields: every read is bounds-checked against the bytes left ---- */

/* bytes of a scalar value of each pbs2p_gguf_type; 0 for STRING and ARRAY */
static const uint8_t SCALAR_BYTES[13] = {1, 1, 2, 2, 4, 4, 4, 1, 0, 0, 8, 8, 8};

static uint32_t le32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}
static uint64_t le64(const uint8_t *p) { return (uint64_t)le32(p) | (uint64_t)le32(p + 4) << 32; }

typedef struct cursor {
    const uint8_t *base;
    uint64_t size, pos;
    char item[SHOWN + 64]; /* what is being read, for messages: "key-value #3 'general.name'" */
} cursor;

static pbs2p_status take(cursor *c, uint64_t n, const char *field, const uint8_t **out) {
    if (n > c->size - c->pos)
        return pbs2p_fail(PBS2P_ERR_TRUNCATED, "GGUF truncated: the %s of %s needs %" PRIu64 " bytes at offset %" PRIu64
                          " but the file ends at %" PRIu64, field, c->item, n, c->pos, c->size);
    *out = c->base + c->pos;
    c->pos += n;
    return PBS2P_OK;
}

static pbs2p_status take_u32(cursor *c, const char *field, uint32_t *v) {
    const uint8_t *p = NULL; /* set by take() on success; the initializer quiets GCC's -Wmaybe-uninitialized */
    TRY(take(c, 4, field, &p));
    *v = le32(p);
    return PBS2P_OK;
}

static pbs2p_status take_u64(cursor *c, const char *field, uint64_t *v) {
    const uint8_t *p = NULL; /* set by take() on success */
    TRY(take(c, 8, field, &p));
    *v = le64(p);
    return PBS2P_OK;
}

/* A key or tensor name: 1..PBS2P_GGUF_MAX_NAME bytes, no NUL. */
static pbs2p_status take_name(cursor *c, const char *field, const uint8_t **s, uint64_t *len) {
    uint64_t at = c->pos;
    TRY(take_u64(c, field, len));
    if (*len == 0 || *len > PBS2P_GGUF_MAX_NAME)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: the %s of %s at offset %" PRIu64 " has %" PRIu64
                          " bytes; names have 1..%d", field, c->item, at, *len, PBS2P_GGUF_MAX_NAME);
    TRY(take(c, *len, field, s));
    if (memchr(*s, 0, (size_t)*len))
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: the %s of %s at offset %" PRIu64 " contains a NUL byte",
                          field, c->item, at);
    return PBS2P_OK;
}

/* ---- the object being built ---- */

typedef struct builder {
    pbs2p_gguf *f;
    uint64_t strs_cap;
    size_t pool_len, pool_cap;
    uint64_t *kv_name, *t_name; /* offsets of each name in f->names until the pool stops moving */
} builder;

static pbs2p_status pool_add(builder *b, const uint8_t *s, uint64_t len, uint64_t *off) {
    if (b->pool_len + len + 1 > b->pool_cap) {
        size_t cap = b->pool_cap ? b->pool_cap : 4096;
        while (cap < b->pool_len + len + 1) cap *= 2; /* total <= file size + names: no overflow */
        char *p = realloc(b->f->names, cap);
        if (!p) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %zu bytes of GGUF names", cap);
        b->f->names = p;
        b->pool_cap = cap;
    }
    memcpy(b->f->names + b->pool_len, s, (size_t)len);
    b->f->names[b->pool_len + len] = '\0';
    *off = b->pool_len;
    b->pool_len += (size_t)len + 1;
    return PBS2P_OK;
}

static pbs2p_status strs_reserve(builder *b, uint64_t extra) {
    uint64_t need = b->f->n_strs + extra; /* both <= file size / 8 */
    if (need <= b->strs_cap) return PBS2P_OK;
    uint64_t cap = b->strs_cap ? b->strs_cap : 256;
    while (cap < need) cap *= 2;
    if (cap > SIZE_MAX / sizeof(gguf_str))
        return pbs2p_fail(PBS2P_ERR_NOMEM, "%" PRIu64 " GGUF strings do not fit in memory", cap);
    gguf_str *p = realloc(b->f->strs, (size_t)cap * sizeof *p);
    if (!p) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %" PRIu64 " GGUF strings", cap);
    b->f->strs = p;
    b->strs_cap = cap;
    return PBS2P_OK;
}

static pbs2p_status check_bools(const cursor *c, const uint8_t *p, uint64_t n) {
    for (uint64_t k = 0; k < n; k++)
        if (p[k] > 1)
            return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: bool #%" PRIu64 " of %s is %u (must be 0 or 1)",
                              k, c->item, (unsigned)p[k]);
    return PBS2P_OK;
}

/* ---- key-values (layout item 4) ---- */

static pbs2p_status parse_value(cursor *c, builder *b, gguf_kv_rec *kv) {
    uint32_t type, et;
    TRY(take_u32(c, "value type", &type));
    if (type > PBS2P_GGUF_FLOAT64)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s has unknown value type %u", c->item, type);
    kv->type = kv->elem_type = (int32_t)type;
    kv->count = 1;
    if (type == PBS2P_GGUF_STRING) {
        TRY(take_u64(c, "string length", &kv->count));
        if (kv->count > PBS2P_GGUF_MAX_STRING)
            return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s is a string of %" PRIu64 " bytes (limit %" PRIu64 ")",
                              c->item, kv->count, PBS2P_GGUF_MAX_STRING);
        return take(c, kv->count, "string", &kv->data);
    }
    if (type != PBS2P_GGUF_ARRAY) {
        TRY(take(c, SCALAR_BYTES[type], "value", &kv->data));
        return type == PBS2P_GGUF_BOOL ? check_bools(c, kv->data, 1) : PBS2P_OK;
    }
    TRY(take_u32(c, "array element type", &et));
    if (et == PBS2P_GGUF_ARRAY)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s is an array of arrays (nested arrays are not supported)",
                          c->item);
    if (et > PBS2P_GGUF_FLOAT64)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s is an array of unknown value type %u", c->item, et);
    kv->elem_type = (int32_t)et;
    TRY(take_u64(c, "array length", &kv->count));
    if (kv->count > PBS2P_GGUF_MAX_ARRAY)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s is an array of %" PRIu64 " elements (limit %" PRIu64 ")",
                          c->item, kv->count, PBS2P_GGUF_MAX_ARRAY);
    if (et != PBS2P_GGUF_STRING) {
        TRY(take(c, kv->count * SCALAR_BYTES[et], "array data", &kv->data)); /* <= 2^32 * 8: no overflow */
        return et == PBS2P_GGUF_BOOL ? check_bools(c, kv->data, kv->count) : PBS2P_OK;
    }
    /* array of strings: each takes >= 8 bytes, so the count is bounded by the bytes left before we allocate */
    if (kv->count > (c->size - c->pos) / 8)
        return pbs2p_fail(PBS2P_ERR_TRUNCATED, "GGUF truncated: %s is an array of %" PRIu64 " strings, more than the %"
                          PRIu64 " bytes left at offset %" PRIu64 " can hold", c->item, kv->count, c->size - c->pos, c->pos);
    TRY(strs_reserve(b, kv->count));
    kv->data = NULL;
    kv->first_str = b->f->n_strs;
    for (uint64_t k = 0; k < kv->count; k++) {
        gguf_str *s = &b->f->strs[b->f->n_strs];
        TRY(take_u64(c, "string length", &s->len));
        if (s->len > c->size - c->pos)
            return pbs2p_fail(PBS2P_ERR_TRUNCATED, "GGUF truncated: string #%" PRIu64 " of %s needs %" PRIu64
                              " bytes at offset %" PRIu64 " but the file ends at %" PRIu64,
                              k, c->item, s->len, c->pos, c->size);
        s->bytes = c->base + c->pos;
        c->pos += s->len;
        b->f->n_strs++;
    }
    return PBS2P_OK;
}

static pbs2p_status parse_kvs(cursor *c, builder *b, uint64_t *align_kv) {
    pbs2p_gguf *f = b->f;
    *align_kv = UINT64_MAX;
    for (uint64_t i = 0; i < f->info.n_kv; i++) {
        const uint8_t *key;
        uint64_t len;
        snprintf(c->item, sizeof c->item, "key-value #%" PRIu64, i);
        TRY(take_name(c, "key", &key, &len));
        snprintf(c->item, sizeof c->item, "key-value #%" PRIu64 " '%.*s'", i, (int)(len < SHOWN ? len : SHOWN),
                 (const char *)key);
        TRY(pool_add(b, key, len, &b->kv_name[i]));
        TRY(parse_value(c, b, &f->kv[i]));
        if (len == 17 && memcmp(key, "general.alignment", 17) == 0 && *align_kv == UINT64_MAX) *align_kv = i;
    }
    return PBS2P_OK;
}

static pbs2p_status read_alignment(pbs2p_gguf *f, uint64_t align_kv) {
    f->info.alignment = PBS2P_GGUF_DEFAULT_ALIGNMENT;
    if (align_kv == UINT64_MAX) return PBS2P_OK;
    const gguf_kv_rec *kv = &f->kv[align_kv];
    if (kv->type != PBS2P_GGUF_UINT32)
        return pbs2p_fail(PBS2P_ERR_TYPE, "GGUF key general.alignment has value type %d, must be UINT32 (%d)",
                          (int)kv->type, PBS2P_GGUF_UINT32);
    uint32_t a = le32(kv->data);
    if (a == 0 || (a & (a - 1)) != 0)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: general.alignment = %u is not a power of two", a);
    f->info.alignment = a;
    return PBS2P_OK;
}

/* ---- tensor infos (layout item 5) ---- */

static pbs2p_status parse_tensor(cursor *c, builder *b, uint64_t i, uint64_t *rel_offset) {
    pbs2p_gguf_tensor *t = &b->f->tensors[i];
    const uint8_t *name;
    uint64_t len, nel = 1;
    uint32_t n_dims, type;
    snprintf(c->item, sizeof c->item, "tensor info #%" PRIu64, i);
    TRY(take_name(c, "name", &name, &len));
    snprintf(c->item, sizeof c->item, "tensor '%.*s'", (int)(len < SHOWN ? len : SHOWN), (const char *)name);
    TRY(pool_add(b, name, len, &b->t_name[i]));
    TRY(take_u32(c, "n_dims", &n_dims));
    if (n_dims < 1 || n_dims > PBS2P_GGUF_MAX_DIMS)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s has n_dims %u (must be 1..%d)", c->item, n_dims,
                          PBS2P_GGUF_MAX_DIMS);
    t->n_dims = (int32_t)n_dims;
    for (uint32_t d = 0; d < PBS2P_GGUF_MAX_DIMS; d++) {
        t->ne[d] = 1;
        if (d >= n_dims) continue;
        TRY(take_u64(c, "dimension", &t->ne[d]));
        if (t->ne[d] == 0 || t->ne[d] > (uint64_t)INT64_MAX)
            return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s has ne[%u] = %" PRIu64 " (must be 1..INT64_MAX)",
                              c->item, d, t->ne[d]);
        if (nel > (uint64_t)INT64_MAX / t->ne[d])
            return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: the element count of %s overflows INT64_MAX at ne[%u]",
                              c->item, d);
        nel *= t->ne[d];
    }
    TRY(take_u32(c, "ggml type", &type));
    TRY(take_u64(c, "data offset", rel_offset));
    size_t block, block_bytes;
    if (type > INT32_MAX || !pbs2p_ggml_type_size((int32_t)type, &block, &block_bytes)) {
        const char *known = type <= INT32_MAX ? pbs2p_ggml_type_name((int32_t)type) : NULL;
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "%s has ggml type %u (%s), which this reader does not support",
                          c->item, type, known ? known : "unknown");
    }
    t->type = (int32_t)type;
    if (t->ne[0] % block)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s of type %s has ne[0] = %" PRIu64
                          ", not a multiple of its block of %zu", c->item, pbs2p_ggml_type_name(t->type), t->ne[0], block);
    if (nel / block > (uint64_t)INT64_MAX / block_bytes)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: the byte size of %s overflows INT64_MAX", c->item);
    t->n_elements = nel;
    t->n_bytes = nel / block * block_bytes;
    if (*rel_offset % b->f->info.alignment)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: %s has data offset %" PRIu64
                          ", not a multiple of the alignment %u", c->item, *rel_offset, b->f->info.alignment);
    return PBS2P_OK;
}

/* ---- data section (layout items 6, 7) ---- */

typedef struct extent { uint64_t begin, end, index; } extent;

static int extent_cmp(const void *a, const void *b) {
    const extent *x = a, *y = b;
    return x->begin < y->begin ? -1 : x->begin > y->begin;
}

static pbs2p_status place_tensors(pbs2p_gguf *f, const uint64_t *rel_offset) {
    uint64_t n = f->info.n_tensors, align = f->info.alignment, pos = f->info.data_offset;
    uint64_t start = pos + (align - pos % align) % align;
    f->info.data_offset = start;
    if (n == 0) return PBS2P_OK;
    if (start > f->size)
        return pbs2p_fail(PBS2P_ERR_TRUNCATED, "GGUF truncated: the data section starts at offset %" PRIu64
                          " but the file ends at %" PRIu64, start, f->size);
    uint64_t room = f->size - start;
    extent *ex = malloc((size_t)n * sizeof *ex);
    if (!ex) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %" PRIu64 " tensor extents", n);
    pbs2p_status st = PBS2P_OK;
    for (uint64_t i = 0; i < n && st == PBS2P_OK; i++) {
        pbs2p_gguf_tensor *t = &f->tensors[i];
        if (rel_offset[i] > room || t->n_bytes > room - rel_offset[i]) {
            st = pbs2p_fail(PBS2P_ERR_TRUNCATED, "GGUF truncated: the %" PRIu64 " data bytes of tensor '%.*s' at data offset %"
                            PRIu64 " end past the end of the file (%" PRIu64 " bytes of data)",
                            t->n_bytes, SHOWN, t->name, rel_offset[i], room);
            break;
        }
        t->offset = start + rel_offset[i];
        t->data = f->base + t->offset;
        ex[i] = (extent){rel_offset[i], rel_offset[i] + t->n_bytes, i};
    }
    if (st == PBS2P_OK) {
        qsort(ex, (size_t)n, sizeof *ex, extent_cmp);
        for (uint64_t k = 1; k < n && st == PBS2P_OK; k++)
            if (ex[k].begin < ex[k - 1].end)
                st = pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: the data of tensors '%.*s' and '%.*s' overlap",
                                SHOWN, f->tensors[ex[k - 1].index].name, SHOWN, f->tensors[ex[k].index].name);
    }
    free(ex);
    return st;
}

/* ---- name indexes ---- */

static int name_cmp(const void *a, const void *b) {
    return strcmp(((const gguf_name_ix *)a)->name, ((const gguf_name_ix *)b)->name);
}

const gguf_name_ix *pbs2p_gguf_lookup(const gguf_name_ix *ix, uint64_t n, const char *name) {
    gguf_name_ix key = {name, 0};
    return n ? bsearch(&key, ix, (size_t)n, sizeof *ix, name_cmp) : NULL;
}

/* Sorted (name, index) pairs; PBS2P_ERR_GGUF on a duplicate name. */
static pbs2p_status index_names(gguf_name_ix **out, uint64_t n, const char *const *names, const char *what) {
    *out = malloc((size_t)(n ? n : 1) * sizeof **out);
    if (!*out) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %" PRIu64 " GGUF %s names", n, what);
    for (uint64_t i = 0; i < n; i++) (*out)[i] = (gguf_name_ix){names[i], i};
    if (n) qsort(*out, (size_t)n, sizeof **out, name_cmp);
    for (uint64_t k = 1; k < n; k++)
        if (strcmp((*out)[k - 1].name, (*out)[k].name) == 0)
            return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: two %ss are named '%.*s'", what, SHOWN, (*out)[k].name);
    return PBS2P_OK;
}

/* ---- the whole file ---- */

static pbs2p_status parse_header(cursor *c, pbs2p_gguf *f) {
    const uint8_t *magic = NULL; /* set by take() on success */
    snprintf(c->item, sizeof c->item, "the header");
    if (c->size < 4 && memcmp(c->base, "GGUF", (size_t)c->size) != 0)
        return pbs2p_fail(PBS2P_ERR_GGUF, "not a GGUF file: %" PRIu64 " bytes that do not start with 'GGUF'", c->size);
    TRY(take(c, 4, "magic", &magic));
    if (memcmp(magic, "GGUF", 4) != 0)
        return pbs2p_fail(PBS2P_ERR_GGUF, "not a GGUF file: it starts with bytes %02x %02x %02x %02x, not 'GGUF'",
                          magic[0], magic[1], magic[2], magic[3]);
    TRY(take_u32(c, "version", &f->info.version));
    uint32_t v = f->info.version;
    if (v != 2 && v != 3) {
        if (v != 0 && (v & 0xFFFFu) == 0)
            return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "big-endian GGUF files are not supported (version field %08x)", v);
        return pbs2p_fail(PBS2P_ERR_UNSUPPORTED, "GGUF version %u is not supported (this library reads 2 and 3)", v);
    }
    TRY(take_u64(c, "tensor count", &f->info.n_tensors));
    TRY(take_u64(c, "key-value count", &f->info.n_kv));
    if (f->info.n_tensors > PBS2P_GGUF_MAX_TENSORS || f->info.n_kv > PBS2P_GGUF_MAX_KV)
        return pbs2p_fail(PBS2P_ERR_GGUF, "malformed GGUF: the header claims %" PRIu64 " tensors and %" PRIu64
                          " key-values (limits %u and %u)", f->info.n_tensors, f->info.n_kv,
                          PBS2P_GGUF_MAX_TENSORS, PBS2P_GGUF_MAX_KV);
    uint64_t least = f->info.n_kv * MIN_KV_BYTES + f->info.n_tensors * MIN_TENSOR_BYTES; /* < 2^26: no overflow */
    if (least > c->size - c->pos)
        return pbs2p_fail(PBS2P_ERR_TRUNCATED, "GGUF truncated: %" PRIu64 " key-values and %" PRIu64 " tensor infos need at least %"
                          PRIu64 " bytes after the header, the file has %" PRIu64,
                          f->info.n_kv, f->info.n_tensors, least, c->size - c->pos);
    return PBS2P_OK;
}

static pbs2p_status parse(pbs2p_gguf *f) {
    cursor c = {.base = f->base, .size = f->size, .pos = 0};
    builder b = {.f = f};
    uint64_t align_kv, *rel_offset = NULL;
    f->info.file_size = f->size;
    TRY(parse_header(&c, f));
    uint64_t nkv = f->info.n_kv, nt = f->info.n_tensors;
    f->kv = calloc((size_t)(nkv ? nkv : 1), sizeof *f->kv);
    f->tensors = calloc((size_t)(nt ? nt : 1), sizeof *f->tensors);
    b.kv_name = malloc((size_t)(nkv ? nkv : 1) * sizeof *b.kv_name);
    b.t_name = malloc((size_t)(nt ? nt : 1) * sizeof *b.t_name);
    rel_offset = malloc((size_t)(nt ? nt : 1) * sizeof *rel_offset);
    const char **names = NULL;
    pbs2p_status st = PBS2P_OK;
    if (!f->kv || !f->tensors || !b.kv_name || !b.t_name || !rel_offset)
        st = pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for %" PRIu64 " key-values and %" PRIu64 " tensors", nkv, nt);
    if (st == PBS2P_OK) st = parse_kvs(&c, &b, &align_kv);
    if (st == PBS2P_OK) st = read_alignment(f, align_kv);
    for (uint64_t i = 0; i < nt && st == PBS2P_OK; i++) st = parse_tensor(&c, &b, i, &rel_offset[i]);
    if (st == PBS2P_OK) { /* the pool stopped growing: names become pointers */
        for (uint64_t i = 0; i < nkv; i++) f->kv[i].key = f->names + b.kv_name[i];
        for (uint64_t i = 0; i < nt; i++) f->tensors[i].name = f->names + b.t_name[i];
        f->info.data_offset = c.pos;
        st = place_tensors(f, rel_offset);
    }
    if (st == PBS2P_OK) {
        names = malloc((size_t)((nkv > nt ? nkv : nt) + 1) * sizeof *names);
        if (!names) st = pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for the GGUF name index");
    }
    if (st == PBS2P_OK) {
        for (uint64_t i = 0; i < nkv; i++) names[i] = f->kv[i].key;
        st = index_names(&f->kv_by_name, nkv, names, "key");
    }
    if (st == PBS2P_OK) {
        for (uint64_t i = 0; i < nt; i++) names[i] = f->tensors[i].name;
        st = index_names(&f->t_by_name, nt, names, "tensor");
    }
    free(names);
    free(rel_offset);
    free(b.kv_name);
    free(b.t_name);
    return st;
}

/* ---- open / close ---- */

static pbs2p_status finish_open(pbs2p_gguf *f, pbs2p_gguf **out) {
    pbs2p_status st = parse(f);
    if (st != PBS2P_OK) {
        pbs2p_gguf_close(f);
        return st;
    }
    *out = f;
    return PBS2P_OK;
}

pbs2p_status pbs2p_gguf_open_memory(const void *data, size_t size, pbs2p_gguf **out) {
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output handle pointer is NULL");
    *out = NULL;
    if (!data) return pbs2p_fail(PBS2P_ERR_NULL, "GGUF data pointer is NULL");
    pbs2p_gguf *f = calloc(1, sizeof *f);
    if (!f) return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a GGUF handle");
    f->base = data;
    f->size = size;
    return finish_open(f, out);
}

pbs2p_status pbs2p_gguf_open(const char *path, pbs2p_gguf **out) {
    static const uint8_t empty[1] = {0}; /* the bytes of an empty file (never mapped) */
    char why[128];
    if (!out) return pbs2p_fail(PBS2P_ERR_NULL, "output handle pointer is NULL");
    *out = NULL;
    if (!path) return pbs2p_fail(PBS2P_ERR_NULL, "path is NULL");
    int fd = open(path, O_RDONLY | O_CLOEXEC | O_NONBLOCK); /* O_NONBLOCK: a FIFO must not block us */
    if (fd < 0) {
        int e = errno;
        if (strerror_r(e, why, sizeof why) != 0) snprintf(why, sizeof why, "errno %d", e);
        return pbs2p_fail(PBS2P_ERR_IO, "cannot open %.160s: %s", path, why);
    }
    struct stat sb;
    if (fstat(fd, &sb) != 0 || !S_ISREG(sb.st_mode)) {
        close(fd);
        return pbs2p_fail(PBS2P_ERR_IO, "%.160s is not a regular file", path);
    }
    if ((uint64_t)sb.st_size > (uint64_t)SIZE_MAX) {
        close(fd);
        return pbs2p_fail(PBS2P_ERR_IO, "%.160s has %jd bytes, more than this process can map", path, (intmax_t)sb.st_size);
    }
    size_t len = (size_t)sb.st_size;
    const uint8_t *base = empty;
    if (len > 0) {
        void *m = mmap(NULL, len, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            if (strerror_r(e, why, sizeof why) != 0) snprintf(why, sizeof why, "errno %d", e);
            return pbs2p_fail(PBS2P_ERR_IO, "cannot memory-map %.160s: %s", path, why);
        }
        base = m;
    }
    close(fd); /* the mapping keeps the file */
    pbs2p_gguf *f = calloc(1, sizeof *f);
    if (!f) {
        if (len) munmap((void *)base, len);
        return pbs2p_fail(PBS2P_ERR_NOMEM, "out of memory for a GGUF handle");
    }
    f->base = base;
    f->size = len;
    f->map_len = len;
    return finish_open(f, out);
}

void pbs2p_gguf_release(const pbs2p_gguf *f, const void *p, size_t len) {
#ifdef MADV_DONTNEED
    if (!f->map_len || !p || !len) return; /* a caller's buffer is the caller's */
    const uintptr_t page = (uintptr_t)sysconf(_SC_PAGESIZE), lo = (uintptr_t)f->base, hi = lo + f->map_len;
    uintptr_t a = (uintptr_t)p & ~(page - 1), b = (uintptr_t)p + len;
    if (a < lo || b > hi || b <= a) return;
    /* a read-only private file mapping: a dropped page comes back from the file if anything reads it again */
    madvise((void *)a, b - a, MADV_DONTNEED);
#else
    (void)f; (void)p; (void)len;
#endif
}

void pbs2p_gguf_close(pbs2p_gguf *f) {
    if (!f) return;
    if (f->map_len) munmap((void *)f->base, f->map_len);
    free(f->kv);
    free(f->kv_by_name);
    free(f->tensors);
    free(f->t_by_name);
    free(f->strs);
    free(f->names);
    free(f);
}

/* gguf_internal.h — the in-memory index of an open GGUF file, shared by the parser (gguf.c) and the lookups (gguf_lookup.c). */
#ifndef PBS2P_GGUF_INTERNAL_H
#define PBS2P_GGUF_INTERNAL_H

#include "internal.h"

/* A key-value as validated by the parser; every pointer lies inside the mapping (or the name pool). */
typedef struct gguf_kv_rec {
    const char *key;          /* NUL-terminated, in the name pool */
    int32_t type, elem_type;  /* pbs2p_gguf_type; elem_type == type for non-arrays */
    uint64_t count;           /* array elements, string bytes, or 1 */
    const uint8_t *data;      /* value bytes / string bytes / first array element (NULL for string arrays) */
    uint64_t first_str;       /* arrays of strings: index of element 0 in pbs2p_gguf.strs */
} gguf_kv_rec;

/* One string of an array of strings. */
typedef struct gguf_str {
    const uint8_t *bytes;     /* inside the mapping, not NUL-terminated */
    uint64_t len;
} gguf_str;

/* (name, index) sorted by name, for duplicate checks and binary-search lookups. */
typedef struct gguf_name_ix {
    const char *name;
    uint64_t index;
} gguf_name_ix;

struct pbs2p_gguf {
    const uint8_t *base;      /* the file's bytes: (size,) */
    uint64_t size;
    size_t map_len;           /* > 0: base is our mmap of map_len bytes, unmapped by close */
    pbs2p_gguf_info info;
    gguf_kv_rec *kv;          /* (n_kv,) file order */
    gguf_name_ix *kv_by_name; /* (n_kv,) sorted by key */
    pbs2p_gguf_tensor *tensors;   /* (n_tensors,) file order */
    gguf_name_ix *t_by_name;  /* (n_tensors,) sorted by name */
    gguf_str *strs;           /* (n_strs,) elements of every array of strings, array after array */
    uint64_t n_strs;
    char *names;              /* pool of NUL-terminated keys and tensor names */
};

/* Gives the pages holding [p, p + len) of f's file mapping back to the system (the kernel reads them from the file
 * again if they are touched): for bytes a prepared copy has replaced. Nothing for a caller's buffer. */
void pbs2p_gguf_release(const pbs2p_gguf *f, const void *p, size_t len);

/* The entry named `name` in `ix` (n entries sorted by name), or NULL. */
const gguf_name_ix *pbs2p_gguf_lookup(const gguf_name_ix *ix, uint64_t n, const char *name);

#endif /* PBS2P_GGUF_INTERNAL_H */

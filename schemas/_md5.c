/* The record hash of schemas/lineage.py: per row, the hex MD5 of its columns' UTF-8 joined by a
 * separator byte, read straight from the Arrow string columns.
 *
 * What it owns: the row loop. The recipe (which columns, how a value becomes text, the null mark,
 * the separator) is lineage.py's; this only hashes what it is given, with MD5 as RFC 1321 defines
 * it (the test checks it against hashlib and against DuckDB's md5(concat_ws(...)), the recipe's
 * first implementation). Nothing is concatenated in memory: each row streams through one MD5
 * state. Rows are split over up to `threads` threads; the GIL is released.
 *
 * hex_rows(columns, sep, threads) -> bytes
 *   columns: a sequence of (values, offsets) pairs, one per column, every offsets int32 with
 *            rows + 1 entries rebased to 0 (the same rows in every column)
 *   sep:     the byte between two columns' values
 *   returns: 32 lowercase hex characters per row, rows back to back
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#include "_string_column.h"

#define MAX_THREADS 8

typedef struct {
    uint32_t a, b, c, d;
    uint64_t length; /* bytes fed so far */
    uint8_t block[64];
    size_t held; /* bytes in block */
} Md5;

static const uint32_t K[64] = {
    0xd76aa478, 0xe8c7b756, 0x242070db, 0xc1bdceee, 0xf57c0faf, 0x4787c62a, 0xa8304613, 0xfd469501,
    0x698098d8, 0x8b44f7af, 0xffff5bb1, 0x895cd7be, 0x6b901122, 0xfd987193, 0xa679438e, 0x49b40821,
    0xf61e2562, 0xc040b340, 0x265e5a51, 0xe9b6c7aa, 0xd62f105d, 0x02441453, 0xd8a1e681, 0xe7d3fbc8,
    0x21e1cde6, 0xc33707d6, 0xf4d50d87, 0x455a14ed, 0xa9e3e905, 0xfcefa3f8, 0x676f02d9, 0x8d2a4c8a,
    0xfffa3942, 0x8771f681, 0x6d9d6122, 0xfde5380c, 0xa4beea44, 0x4bdecfa9, 0xf6bb4b60, 0xbebfbc70,
    0x289b7ec6, 0xeaa127fa, 0xd4ef3085, 0x04881d05, 0xd9d4d039, 0xe6db99e5, 0x1fa27cf8, 0xc4ac5665,
    0xf4292244, 0x432aff97, 0xab9423a7, 0xfc93a039, 0x655b59c3, 0x8f0ccc92, 0xffeff47d, 0x85845dd1,
    0x6fa87e4f, 0xfe2ce6e0, 0xa3014314, 0x4e0811a1, 0xf7537e82, 0xbd3af235, 0x2ad7d2bb, 0xeb86d391,
};

#define ROTL(x, s) (((x) << (s)) | ((x) >> (32 - (s))))
#define STEP(f, a, b, c, d, m, k, s) (a) = (b) + ROTL((a) + (f) + (m) + (k), s)
#define F1(b, c, d) ((d) ^ ((b) & ((c) ^ (d))))
#define F2(b, c, d) ((c) ^ ((d) & ((b) ^ (c))))
#define F3(b, c, d) ((b) ^ (c) ^ (d))
#define F4(b, c, d) ((c) ^ ((b) | ~(d)))

static inline uint32_t word(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

static void compress(Md5 *h, const uint8_t *block) {
    uint32_t m[16];
    for (int i = 0; i < 16; i++)
        m[i] = word(block + 4 * i);
    uint32_t a = h->a, b = h->b, c = h->c, d = h->d;
    for (int i = 0; i < 16; i += 4) {
        STEP(F1(b, c, d), a, b, c, d, m[i], K[i], 7);
        STEP(F1(a, b, c), d, a, b, c, m[i + 1], K[i + 1], 12);
        STEP(F1(d, a, b), c, d, a, b, m[i + 2], K[i + 2], 17);
        STEP(F1(c, d, a), b, c, d, a, m[i + 3], K[i + 3], 22);
    }
    for (int i = 16; i < 32; i += 4) {
        STEP(F2(b, c, d), a, b, c, d, m[(5 * i + 1) & 15], K[i], 5);
        STEP(F2(a, b, c), d, a, b, c, m[(5 * (i + 1) + 1) & 15], K[i + 1], 9);
        STEP(F2(d, a, b), c, d, a, b, m[(5 * (i + 2) + 1) & 15], K[i + 2], 14);
        STEP(F2(c, d, a), b, c, d, a, m[(5 * (i + 3) + 1) & 15], K[i + 3], 20);
    }
    for (int i = 32; i < 48; i += 4) {
        STEP(F3(b, c, d), a, b, c, d, m[(3 * i + 5) & 15], K[i], 4);
        STEP(F3(a, b, c), d, a, b, c, m[(3 * (i + 1) + 5) & 15], K[i + 1], 11);
        STEP(F3(d, a, b), c, d, a, b, m[(3 * (i + 2) + 5) & 15], K[i + 2], 16);
        STEP(F3(c, d, a), b, c, d, a, m[(3 * (i + 3) + 5) & 15], K[i + 3], 23);
    }
    for (int i = 48; i < 64; i += 4) {
        STEP(F4(b, c, d), a, b, c, d, m[(7 * i) & 15], K[i], 6);
        STEP(F4(a, b, c), d, a, b, c, m[(7 * (i + 1)) & 15], K[i + 1], 10);
        STEP(F4(d, a, b), c, d, a, b, m[(7 * (i + 2)) & 15], K[i + 2], 15);
        STEP(F4(c, d, a), b, c, d, a, m[(7 * (i + 3)) & 15], K[i + 3], 21);
    }
    h->a += a;
    h->b += b;
    h->c += c;
    h->d += d;
}

static inline void start(Md5 *h) {
    h->a = 0x67452301;
    h->b = 0xefcdab89;
    h->c = 0x98badcfe;
    h->d = 0x10325476;
    h->length = 0;
    h->held = 0;
}

static void feed(Md5 *h, const uint8_t *p, size_t n) {
    h->length += n;
    if (h->held) {
        size_t take = 64 - h->held < n ? 64 - h->held : n;
        memcpy(h->block + h->held, p, take);
        h->held += take;
        p += take;
        n -= take;
        if (h->held < 64)
            return;
        compress(h, h->block);
        h->held = 0;
    }
    for (; n >= 64; p += 64, n -= 64)
        compress(h, p);
    memcpy(h->block, p, n);
    h->held = n;
}

static void finish_hex(Md5 *h, char *out) {
    static const char HEX[] = "0123456789abcdef";
    uint64_t bits = h->length * 8;
    uint8_t pad[72] = {0x80};
    size_t fill = (h->held < 56 ? 56 : 120) - h->held;
    for (int i = 0; i < 8; i++)
        pad[fill + i] = (uint8_t)(bits >> (8 * i));
    feed(h, pad, fill + 8);
    uint32_t state[4] = {h->a, h->b, h->c, h->d};
    for (int i = 0; i < 16; i++) {
        uint8_t byte = (uint8_t)(state[i / 4] >> (8 * (i % 4)));
        out[2 * i] = HEX[byte >> 4];
        out[2 * i + 1] = HEX[byte & 15];
    }
}

typedef struct {
    Py_ssize_t ncols, first, last; /* rows [first, last) */
    const uint8_t **values;
    const int32_t **offsets;
    uint8_t sep;
    char *out;
} Work;

static void *hash_rows(void *arg) {
    const Work *w = arg;
    Md5 h;
    for (Py_ssize_t r = w->first; r < w->last; r++) {
        start(&h);
        for (Py_ssize_t c = 0; c < w->ncols; c++) {
            if (c)
                feed(&h, &w->sep, 1);
            feed(&h, w->values[c] + w->offsets[c][r], (size_t)(w->offsets[c][r + 1] - w->offsets[c][r]));
        }
        finish_hex(&h, w->out + 32 * r);
    }
    return NULL;
}

static PyObject *hex_rows(PyObject *self, PyObject *args) {
    PyObject *columns;
    int sep, threads;
    if (!PyArg_ParseTuple(args, "Oii", &columns, &sep, &threads))
        return NULL;
    if (sep < 0 || sep > 255) {
        PyErr_SetString(PyExc_ValueError, "sep must be one byte (0-255)");
        return NULL;
    }
    PyObject *seq = PySequence_Fast(columns, "columns must be a sequence of (values, offsets) pairs");
    if (!seq)
        return NULL;
    Py_ssize_t ncols = PySequence_Fast_GET_SIZE(seq), rows = -1, got = 0;
    PyObject *result = NULL;
    Py_buffer *bufs = PyMem_Calloc(2 * (size_t)(ncols ? ncols : 1), sizeof(Py_buffer));
    const uint8_t **values = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(*values));
    const int32_t **offsets = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(*offsets));
    if (!bufs || !values || !offsets) {
        PyErr_NoMemory();
        goto done;
    }
    if (ncols == 0) {
        PyErr_SetString(PyExc_ValueError, "at least one column is needed");
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++, got++) {
        PyObject *pair = PySequence_Fast_GET_ITEM(seq, c);
        if (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2) {
            PyErr_Format(PyExc_TypeError, "column %zd: each column is a (values, offsets) pair", c);
            goto done;
        }
        if (!PyArg_ParseTuple(pair, "y*y*", &bufs[2 * c], &bufs[2 * c + 1]))
            goto done;
        Py_buffer *v = &bufs[2 * c], *o = &bufs[2 * c + 1];
        Py_ssize_t n = -1;
        const char *problem = string_column_problem(v, o, &n);
        if (!problem && rows >= 0 && n != rows)
            problem = "offsets must be int32, one more than the rows of every column";
        if (problem) {
            PyErr_Format(PyExc_ValueError, "column %zd: %s", c, problem);
            got++;
            goto done;
        }
        rows = n;
        const int32_t *off = o->buf;
        values[c] = v->buf;
        offsets[c] = off;
    }
    result = PyBytes_FromStringAndSize(NULL, 32 * rows);
    if (!result)
        goto done;
    if (threads < 1)
        threads = 1;
    if (threads > MAX_THREADS)
        threads = MAX_THREADS;
    if (rows < 4096 * threads)
        threads = rows / 4096 > 0 ? (int)(rows / 4096) : 1;
    Work work[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    int started[MAX_THREADS] = {0};
    for (int t = 0; t < threads; t++)
        work[t] = (Work){ncols, rows * t / threads, rows * (t + 1) / threads, values, offsets, (uint8_t)sep,
                         PyBytes_AS_STRING(result)};
    Py_BEGIN_ALLOW_THREADS
    for (int t = 1; t < threads; t++)
        started[t] = pthread_create(&ids[t], NULL, hash_rows, &work[t]) == 0;
    hash_rows(&work[0]);
    for (int t = 1; t < threads; t++) {
        if (started[t])
            pthread_join(ids[t], NULL);
        else
            hash_rows(&work[t]); /* no thread to be had: this one does the share */
    }
    Py_END_ALLOW_THREADS
done:
    for (Py_ssize_t i = 0; bufs && i < 2 * got; i++)
        PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    PyMem_Free(values);
    PyMem_Free(offsets);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"hex_rows", hex_rows, METH_VARARGS,
     "hex_rows(columns, sep, threads) -> bytes: 32 hex characters of MD5 per row over its columns joined by sep"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5", NULL, -1, methods};

PyMODINIT_FUNC PyInit__md5(void) { return PyModule_Create(&module); }

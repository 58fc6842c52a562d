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
 *   columns: one entry per column, the same rows in every column, each either
 *            (values, offsets): text, every offsets int32 with rows + 1 entries rebased to 0; or
 *            (kind, data, nulls, param): a typed column written as Arrow's cast to string writes
 *            it, so that nothing is cast in memory first (1M 杨浦 rows: 0.27 s of casts):
 *              INT     data: signed little-endian integers of `param` bytes (1, 2, 4 or 8)
 *              DATE    data: int32 days since 1970-01-01, as YYYY-MM-DD (years 0000-9999 only)
 *              DECIMAL data: 16-byte little-endian decimal128 unscaled values; param: the scale,
 *                      0-6 (where Arrow writes plain digits, never an exponent)
 *              BOOL    data: one byte per row, 0 false, else true ("true"/"false")
 *            nulls: one byte per row, non-zero for null (written as the null mark, one 0x00
 *            byte, as lineage.py writes a null text value), or None when there are none
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

enum { TEXT = 0, INT = 1, DATE = 2, DECIMAL = 3, BOOL = 4 };

/* Days of 0000-01-01 and 9999-12-31 since 1970-01-01: the dates Arrow writes as four-digit years. */
#define FIRST_DAY (-719528)
#define LAST_DAY 2932896

typedef struct {
    int kind, param;
    const uint8_t *values; /* TEXT */
    const int32_t *offsets;
    const uint8_t *data; /* typed */
    const uint8_t *nulls;
} Column;

/* Digits of u, most significant first, into out; returns how many. */
static size_t digits(unsigned __int128 u, char *out) {
    char tmp[40];
    size_t n = 0;
    do {
        tmp[n++] = (char)('0' + (int)(u % 10));
        u /= 10;
    } while (u);
    for (size_t i = 0; i < n; i++)
        out[i] = tmp[n - 1 - i];
    return n;
}

static size_t format_int(int64_t v, char *out) {
    if (v < 0) {
        out[0] = '-';
        return 1 + digits((unsigned __int128)(0 - (uint64_t)v), out + 1);
    }
    return digits((unsigned __int128)(uint64_t)v, out);
}

/* The civil date of a day count (H. Hinnant's days_from_civil, inverted), as YYYY-MM-DD. */
static size_t format_date(int32_t days, char *out) {
    int64_t z = (int64_t)days + 719468;
    int64_t era = (z >= 0 ? z : z - 146096) / 146097;
    unsigned doe = (unsigned)(z - era * 146097);
    unsigned yoe = (doe - doe / 1460 + doe / 36524 - doe / 146096) / 365;
    unsigned doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    unsigned mp = (5 * doy + 2) / 153;
    unsigned day = doy - (153 * mp + 2) / 5 + 1, month = mp < 10 ? mp + 3 : mp - 9;
    unsigned year = (unsigned)((int64_t)yoe + era * 400 + (month <= 2)); /* 0-9999: checked on entry */
    out[0] = (char)('0' + year / 1000);
    out[1] = (char)('0' + year / 100 % 10);
    out[2] = (char)('0' + year / 10 % 10);
    out[3] = (char)('0' + year % 10);
    out[4] = '-';
    out[5] = (char)('0' + month / 10);
    out[6] = (char)('0' + month % 10);
    out[7] = '-';
    out[8] = (char)('0' + day / 10);
    out[9] = (char)('0' + day % 10);
    return 10;
}

/* An unscaled decimal128 with `scale` (0-6) digits after the point, as Arrow writes it: "-0.05". */
static size_t format_decimal(const uint8_t *p, int scale, char *out) {
    unsigned __int128 u = 0;
    for (int i = 15; i >= 0; i--)
        u = u << 8 | p[i];
    int negative = (p[15] & 0x80) != 0;
    if (negative)
        u = ~u + 1;
    char d[40];
    size_t n = digits(u, d), k = 0;
    if (negative)
        out[k++] = '-';
    if (scale == 0) {
        memcpy(out + k, d, n);
        return k + n;
    }
    if (n <= (size_t)scale) {
        out[k++] = '0';
        out[k++] = '.';
        for (size_t i = n; i < (size_t)scale; i++)
            out[k++] = '0';
        memcpy(out + k, d, n);
        return k + n;
    }
    memcpy(out + k, d, n - (size_t)scale);
    k += n - (size_t)scale;
    out[k++] = '.';
    memcpy(out + k, d + n - (size_t)scale, (size_t)scale);
    return k + (size_t)scale;
}

static int64_t int_at(const uint8_t *data, int width, Py_ssize_t r) {
    switch (width) {
    case 1: return ((const int8_t *)data)[r];
    case 2: { int16_t v; memcpy(&v, data + 2 * r, 2); return v; }
    case 4: { int32_t v; memcpy(&v, data + 4 * r, 4); return v; }
    default: { int64_t v; memcpy(&v, data + 8 * r, 8); return v; }
    }
}

static void feed_value(Md5 *h, const Column *col, Py_ssize_t r) {
    if (col->kind == TEXT) {
        feed(h, col->values + col->offsets[r], (size_t)(col->offsets[r + 1] - col->offsets[r]));
        return;
    }
    if (col->nulls && col->nulls[r]) {
        static const uint8_t null_mark = 0;
        feed(h, &null_mark, 1);
        return;
    }
    char text[48];
    size_t n;
    switch (col->kind) {
    case INT: n = format_int(int_at(col->data, col->param, r), text); break;
    case DATE: { int32_t days; memcpy(&days, col->data + 4 * r, 4); n = format_date(days, text); break; }
    case DECIMAL: n = format_decimal(col->data + 16 * r, col->param, text); break;
    default: n = col->data[r] ? 4 : 5; memcpy(text, col->data[r] ? "true" : "false", n); break;
    }
    feed(h, (const uint8_t *)text, n);
}

typedef struct {
    Py_ssize_t ncols, first, last; /* rows [first, last) */
    const Column *columns;
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
            feed_value(&h, &w->columns[c], r);
        }
        finish_hex(&h, w->out + 32 * r);
    }
    return NULL;
}

/* NULL when a typed column is well formed (and then *rows is set); else what is wrong with it. */
static const char *typed_column(int kind, int param, const Py_buffer *data, const Py_buffer *nulls,
                                Py_ssize_t *rows) {
    Py_ssize_t width;
    switch (kind) {
    case INT:
        if (param != 1 && param != 2 && param != 4 && param != 8)
            return "an INT column's param is its width in bytes: 1, 2, 4 or 8";
        width = param;
        break;
    case DATE: width = 4; break;
    case DECIMAL:
        if (param < 0 || param > 6)
            return "a DECIMAL column's scale must be 0-6 (Arrow writes larger scales with an exponent)";
        width = 16;
        break;
    case BOOL: width = 1; break;
    default: return "kind must be INT, DATE, DECIMAL or BOOL";
    }
    if (data->len % width)
        return "data is not a whole number of values";
    Py_ssize_t n = data->len / width;
    if (nulls && nulls->len != n)
        return "nulls must have one byte per row";
    if (kind == DATE) {
        const uint8_t *p = data->buf;
        for (Py_ssize_t r = 0; r < n; r++) {
            int32_t days;
            memcpy(&days, p + 4 * r, 4);
            if ((days < FIRST_DAY || days > LAST_DAY) && !(nulls && ((const uint8_t *)nulls->buf)[r]))
                return "a date outside the years 0000-9999";
        }
    }
    *rows = n;
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
    Column *cols = PyMem_Calloc((size_t)(ncols ? ncols : 1), sizeof(Column));
    if (!bufs || !cols) {
        PyErr_NoMemory();
        goto done;
    }
    if (ncols == 0) {
        PyErr_SetString(PyExc_ValueError, "at least one column is needed");
        goto done;
    }
    for (Py_ssize_t c = 0; c < ncols; c++) {
        PyObject *item = PySequence_Fast_GET_ITEM(seq, c);
        Py_ssize_t size = PyTuple_Check(item) ? PyTuple_GET_SIZE(item) : -1;
        Py_buffer *a = &bufs[2 * c], *b = &bufs[2 * c + 1];
        Py_ssize_t n = -1;
        const char *problem;
        if (size == 2) {
            if (!PyArg_ParseTuple(item, "y*y*", a, b))
                goto done;
            got = 2 * c + 2;
            problem = string_column_problem(a, b, &n);
            cols[c] = (Column){TEXT, 0, a->buf, b->buf, NULL, NULL};
        } else if (size == 4) {
            int kind, param;
            PyObject *nulls;
            if (!PyArg_ParseTuple(item, "iy*Oi", &kind, a, &nulls, &param))
                goto done;
            got = 2 * c + 1;
            if (nulls != Py_None) {
                if (PyObject_GetBuffer(nulls, b, PyBUF_SIMPLE) < 0)
                    goto done;
                got = 2 * c + 2;
            }
            problem = typed_column(kind, param, a, nulls != Py_None ? b : NULL, &n);
            cols[c] = (Column){kind, param, NULL, NULL, a->buf, nulls != Py_None ? b->buf : NULL};
        } else {
            PyErr_Format(PyExc_TypeError,
                         "column %zd: each column is a (values, offsets) pair or a (kind, data, nulls, param) tuple", c);
            goto done;
        }
        if (!problem && rows >= 0 && n != rows)
            problem = "every column must have the same rows";
        if (problem) {
            PyErr_Format(PyExc_ValueError, "column %zd: %s", c, problem);
            goto done;
        }
        rows = n;
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
        work[t] = (Work){ncols, rows * t / threads, rows * (t + 1) / threads, cols, (uint8_t)sep,
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
    for (Py_ssize_t i = 0; bufs && i < got; i++)
        if (bufs[i].obj || bufs[i].buf)
            PyBuffer_Release(&bufs[i]);
    PyMem_Free(bufs);
    PyMem_Free(cols);
    Py_DECREF(seq);
    return result;
}

static PyMethodDef methods[] = {
    {"hex_rows", hex_rows, METH_VARARGS,
     "hex_rows(columns, sep, threads) -> bytes: 32 hex characters of MD5 per row over its columns joined by sep"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_md5", NULL, -1, methods};

PyMODINIT_FUNC PyInit__md5(void) {
    PyObject *m = PyModule_Create(&module);
    if (m && (PyModule_AddIntConstant(m, "INT", INT) < 0 || PyModule_AddIntConstant(m, "DATE", DATE) < 0 ||
              PyModule_AddIntConstant(m, "DECIMAL", DECIMAL) < 0 || PyModule_AddIntConstant(m, "BOOL", BOOL) < 0)) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

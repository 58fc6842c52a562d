/* GBK / GB18030 bytes to UTF-8, by tables the caller builds from Python's own codec.
 *
 * What it owns: the hot loop of connectors/files/transcode.py. It knows the byte structure of
 * the GB family (one byte below 0x80; a lead byte 0x81-0xFE and a trail byte 0x40-0xFE; for
 * GB18030 also lead, 0x30-0x39, 0x81-0xFE, 0x30-0x39) and nothing of the mapping: every character's
 * UTF-8 comes from a table that transcode.py fills by decoding each sequence with Python's codec,
 * so the result is the codec's by construction (glibc's iconv maps 25 GB18030 codes otherwise).
 *
 * Guarantee: it never guesses. At the first sequence its tables do not cover (a 0 entry, a byte
 * outside the structure, a four-byte code above the BMP table, a sequence cut by the end of the
 * buffer) it stops and says where; the caller hands that one character to Python's codec, which
 * decodes it or raises the error the whole file would have raised. It runs without the GIL.
 *
 * decode(data, pairs, quads) -> (utf8: bytes, consumed: int)
 *   data:  bytes-like, the encoded text
 *   pairs: per two-byte code, at (lead - 0x81) * 191 + (trail - 0x40), its character's UTF-8 bytes packed
 *          little-endian in a uint32 (first byte lowest); 0: not covered
 *   quads: the same per four-byte code, by its linear index (GB18030's BMP part); empty for GBK
 */
#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

#include <string.h>

#define PAIRS (126 * 191)

/* bytes of a UTF-8 sequence by the high nibble of its first byte (continuation nibbles never lead) */
static const uint8_t UTF8_LENGTH[16] = {1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 2, 2, 3, 4};

static PyObject *decode(PyObject *self, PyObject *args) {
    Py_buffer data, pairs, quads;
    if (!PyArg_ParseTuple(args, "y*y*y*", &data, &pairs, &quads))
        return NULL;
    PyObject *result = NULL;
    if (pairs.len != (Py_ssize_t)(PAIRS * sizeof(uint32_t)) || quads.len % sizeof(uint32_t)) {
        PyErr_SetString(PyExc_ValueError, "pairs must hold 126*191 packed uint32 characters, quads a whole number");
        goto done;
    }
    /* UTF-8 never takes more than 1.5 bytes per encoded byte here (1 -> 1, 2 -> at most 3, 4 -> at most 4),
     * plus slack for the last character's padded 4-byte store */
    Py_ssize_t n = data.len;
    PyObject *out = PyBytes_FromStringAndSize(NULL, n + n / 2 + 8);
    if (out == NULL)
        goto done;
    const uint8_t *s = (const uint8_t *)data.buf;
    const uint32_t *pair = (const uint32_t *)pairs.buf;
    const uint32_t *quad = (const uint32_t *)quads.buf;
    Py_ssize_t nquad = quads.len / (Py_ssize_t)sizeof(uint32_t);
    uint8_t *o = (uint8_t *)PyBytes_AS_STRING(out);
    uint8_t *start = o;
    Py_ssize_t i = 0;
    Py_BEGIN_ALLOW_THREADS
    while (i < n) {
        uint8_t b = s[i];
        if (b < 0x80) {
            /* a run of ASCII, eight bytes at a time while no byte has its high bit set */
            while (i + 8 <= n) {
                uint64_t w;
                memcpy(&w, s + i, 8);
                if (w & 0x8080808080808080ULL)
                    break;
                memcpy(o, &w, 8);
                o += 8;
                i += 8;
            }
            while (i < n && s[i] < 0x80)
                *o++ = s[i++];
            continue;
        }
        if (b == 0x80 || b == 0xFF || i + 1 >= n)
            break;
        uint8_t c = s[i + 1];
        uint32_t v;
        Py_ssize_t width;
        if (c >= 0x30 && c <= 0x39) {
            if (i + 3 >= n)
                break;
            uint8_t d = s[i + 2], e = s[i + 3];
            if (d < 0x81 || d > 0xFE || e < 0x30 || e > 0x39)
                break;
            Py_ssize_t idx = (((Py_ssize_t)(b - 0x81) * 10 + (c - 0x30)) * 126 + (d - 0x81)) * 10 + (e - 0x30);
            if (idx >= nquad)
                break;
            v = quad[idx];
            width = 4;
        } else {
            if (c < 0x40 || c == 0xFF)
                break;
            v = pair[(b - 0x81) * 191 + (c - 0x40)];
            width = 2;
        }
        if (v == 0)
            break;
        memcpy(o, &v, 4); /* the character's UTF-8, little-endian, padded: 4 bytes written, its length kept */
        o += UTF8_LENGTH[(v & 0xFF) >> 4];
        i += width;
    }
    Py_END_ALLOW_THREADS
    if (_PyBytes_Resize(&out, o - start) < 0)
        goto done;
    result = Py_BuildValue("(Nn)", out, i);
done:
    PyBuffer_Release(&data);
    PyBuffer_Release(&pairs);
    PyBuffer_Release(&quads);
    return result;
}

static PyMethodDef methods[] = {
    {"decode", decode, METH_VARARGS,
     "decode(data, pairs, quads) -> (utf8, consumed): GB-family bytes to UTF-8 up to the first sequence the "
     "tables do not cover"},
    {NULL, NULL, 0, NULL},
};

static struct PyModuleDef module = {PyModuleDef_HEAD_INIT, "_transcode", NULL, -1, methods};

PyMODINIT_FUNC PyInit__transcode(void) { return PyModule_Create(&module); }

/*
 * mpgo._speedups -- optional C accelerator for mpgo.
 *
 * Built by setup.py as an *optional* extension: when it is missing, mpgo
 * falls back to pure Python with the same semantics (see
 * mpgo/_transport/_atomic.py, the only module that imports this one for
 * atomics).
 *
 * Sections
 *   1. Arena: the one registered shared-memory buffer (attach / detach / arena)
 *   2. Atomics on signed 64-bit arena words (load, store, add, cas, swap,
 *      fetch_or, fetch_and)
 *   3. (reserved) Mutex fast path
 *   4. (reserved) Channel fast path
 *   5. Module definition
 *
 * Conventions
 *   - Module functions use METH_FASTCALL and take positional arguments only;
 *     the argument count is checked by hand (no keyword parsing).
 *   - Offsets are byte offsets into the arena; they must be multiples of 8
 *     and the whole 8-byte word must lie inside the buffer.  A misaligned
 *     offset raises ValueError, an offset outside the buffer IndexError, a
 *     call with no arena attached RuntimeError.  Values outside int64 raise
 *     OverflowError (from PyLong_AsLongLong).
 *   - Every atomic is a GCC __atomic builtin with __ATOMIC_SEQ_CST, done on
 *     uint64_t so that add wraps (two's complement, like Go's
 *     atomic.AddInt64) without signed-overflow undefined behaviour.
 *   - The GIL is held throughout; the atomics are what make the operations
 *     safe against *other processes* mapping the same MAP_SHARED arena.
 *
 * The arena state is plain static storage (single-phase init): mpgo has one
 * arena per process, and a global keeps the per-call path free of any
 * module-state lookup.
 */

#define PY_SSIZE_T_CLEAN
#include <Python.h>
#include <stdint.h>

/* ======================================================================
 * 1. Arena
 * ====================================================================== */

static Py_buffer arena_view;         /* valid iff arena_base != NULL */
static char *arena_base = NULL;      /* start of the attached buffer */
static Py_ssize_t arena_len = 0;     /* its length in bytes */

static void
arena_release(void)
{
    if (arena_base != NULL) {
        arena_base = NULL;
        arena_len = 0;
        PyBuffer_Release(&arena_view);
    }
}

PyDoc_STRVAR(attach_doc,
"attach(buffer, /)\n--\n\n"
"Register `buffer` (a writable, contiguous buffer such as an mmap.mmap) as\n"
"the arena every atomic operates on. Holds a buffer export on it until the\n"
"next attach() or detach(). Releases the previously attached arena.");

static PyObject *
sp_attach(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    Py_buffer view;

    if (nargs != 1) {
        PyErr_Format(PyExc_TypeError,
                     "attach() takes exactly 1 argument (%zd given)", nargs);
        return NULL;
    }
    if (PyObject_GetBuffer(args[0], &view, PyBUF_WRITABLE) < 0) {
        return NULL;
    }
    if (view.len < 8) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "arena buffer must hold at least one 8-byte word");
        return NULL;
    }
    if (((uintptr_t)view.buf & 7u) != 0) {
        PyBuffer_Release(&view);
        PyErr_SetString(PyExc_ValueError,
                        "arena buffer must start on an 8-byte boundary");
        return NULL;
    }
    arena_release();
    arena_view = view;
    arena_base = (char *)view.buf;
    arena_len = view.len;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(detach_doc,
"detach()\n--\n\n"
"Release the attached arena (if any). Atomics raise RuntimeError until the\n"
"next attach().");

static PyObject *
sp_detach(PyObject *Py_UNUSED(module), PyObject *const *Py_UNUSED(args),
          Py_ssize_t nargs)
{
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError,
                     "detach() takes no arguments (%zd given)", nargs);
        return NULL;
    }
    arena_release();
    Py_RETURN_NONE;
}

PyDoc_STRVAR(arena_doc,
"arena()\n--\n\n"
"Return the object attached as arena, or None.");

static PyObject *
sp_arena(PyObject *Py_UNUSED(module), PyObject *const *Py_UNUSED(args),
         Py_ssize_t nargs)
{
    if (nargs != 0) {
        PyErr_Format(PyExc_TypeError,
                     "arena() takes no arguments (%zd given)", nargs);
        return NULL;
    }
    if (arena_base == NULL || arena_view.obj == NULL) {
        Py_RETURN_NONE;
    }
    return Py_NewRef(arena_view.obj);
}

/* Translate a Python offset to the address of its arena word, or set an
 * exception and return NULL.  Hot path: one PyLong conversion, two compares. */
static inline uint64_t *
word_at(PyObject *off_obj)
{
    long long off;

    if (arena_base == NULL) {
        PyErr_SetString(PyExc_RuntimeError,
                        "mpgo atomics: no arena attached (call attach() first)");
        return NULL;
    }
    off = PyLong_AsLongLong(off_obj);
    if (off == -1 && PyErr_Occurred()) {
        if (PyErr_ExceptionMatches(PyExc_OverflowError)) {
            PyErr_Clear();
            PyErr_Format(PyExc_IndexError,
                         "arena offset %R outside the arena (%zd bytes)",
                         off_obj, arena_len);
        }
        return NULL;
    }
    if ((off & 7) != 0) {
        PyErr_Format(PyExc_ValueError,
                     "arena offset %lld is not a multiple of 8", off);
        return NULL;
    }
    if (off < 0 || off > (long long)arena_len - 8) {
        PyErr_Format(PyExc_IndexError,
                     "arena offset %lld outside the arena (%zd bytes)",
                     off, arena_len);
        return NULL;
    }
    return (uint64_t *)(arena_base + off);
}

/* Convert an int64 argument; -1 with an exception set on failure. */
static inline int
as_int64(PyObject *obj, uint64_t *out)
{
    long long v = PyLong_AsLongLong(obj);
    if (v == -1 && PyErr_Occurred()) {
        return -1;
    }
    *out = (uint64_t)v;
    return 0;
}

static inline PyObject *
from_word(uint64_t v)
{
    return PyLong_FromLongLong((long long)(int64_t)v);
}

#define CHECK_NARGS(name, n)                                               \
    do {                                                                   \
        if (nargs != (n)) {                                                \
            PyErr_Format(PyExc_TypeError,                                  \
                         name "() takes exactly %d arguments (%zd given)", \
                         (n), nargs);                                      \
            return NULL;                                                   \
        }                                                                  \
    } while (0)

/* ======================================================================
 * 2. Atomics on int64 arena words
 * ====================================================================== */

PyDoc_STRVAR(load_doc,
"load(off, /)\n--\n\n"
"Atomically read the int64 word at byte offset `off`.");

static PyObject *
sp_load(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t *p;

    CHECK_NARGS("load", 1);
    if ((p = word_at(args[0])) == NULL) {
        return NULL;
    }
    return from_word(__atomic_load_n(p, __ATOMIC_SEQ_CST));
}

PyDoc_STRVAR(store_doc,
"store(off, value, /)\n--\n\n"
"Atomically write `value` to the int64 word at byte offset `off`.");

static PyObject *
sp_store(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t *p;
    uint64_t v;

    CHECK_NARGS("store", 2);
    if ((p = word_at(args[0])) == NULL || as_int64(args[1], &v) < 0) {
        return NULL;
    }
    __atomic_store_n(p, v, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

PyDoc_STRVAR(add_doc,
"add(off, delta, /)\n--\n\n"
"Atomically add `delta` to the word at `off` (wrapping at 64 bits) and\n"
"return the NEW value.");

static PyObject *
sp_add(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t *p;
    uint64_t d;

    CHECK_NARGS("add", 2);
    if ((p = word_at(args[0])) == NULL || as_int64(args[1], &d) < 0) {
        return NULL;
    }
    return from_word(__atomic_add_fetch(p, d, __ATOMIC_SEQ_CST));
}

PyDoc_STRVAR(cas_doc,
"cas(off, expected, new, /)\n--\n\n"
"Atomically: if the word at `off` equals `expected`, set it to `new` and\n"
"return True; otherwise leave it and return False.");

static PyObject *
sp_cas(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t *p;
    uint64_t expected, desired;

    CHECK_NARGS("cas", 3);
    if ((p = word_at(args[0])) == NULL || as_int64(args[1], &expected) < 0
        || as_int64(args[2], &desired) < 0) {
        return NULL;
    }
    if (__atomic_compare_exchange_n(p, &expected, desired, 0,
                                    __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

PyDoc_STRVAR(swap_doc,
"swap(off, value, /)\n--\n\n"
"Atomically write `value` to the word at `off`; return the OLD value.");

static PyObject *
sp_swap(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t *p;
    uint64_t v;

    CHECK_NARGS("swap", 2);
    if ((p = word_at(args[0])) == NULL || as_int64(args[1], &v) < 0) {
        return NULL;
    }
    return from_word(__atomic_exchange_n(p, v, __ATOMIC_SEQ_CST));
}

PyDoc_STRVAR(fetch_or_doc,
"fetch_or(off, bits, /)\n--\n\n"
"Atomically OR `bits` into the word at `off`; return the OLD value.");

static PyObject *
sp_fetch_or(PyObject *Py_UNUSED(module), PyObject *const *args,
            Py_ssize_t nargs)
{
    uint64_t *p;
    uint64_t bits;

    CHECK_NARGS("fetch_or", 2);
    if ((p = word_at(args[0])) == NULL || as_int64(args[1], &bits) < 0) {
        return NULL;
    }
    return from_word(__atomic_fetch_or(p, bits, __ATOMIC_SEQ_CST));
}

PyDoc_STRVAR(fetch_and_doc,
"fetch_and(off, bits, /)\n--\n\n"
"Atomically AND `bits` into the word at `off`; return the OLD value.");

static PyObject *
sp_fetch_and(PyObject *Py_UNUSED(module), PyObject *const *args,
             Py_ssize_t nargs)
{
    uint64_t *p;
    uint64_t bits;

    CHECK_NARGS("fetch_and", 2);
    if ((p = word_at(args[0])) == NULL || as_int64(args[1], &bits) < 0) {
        return NULL;
    }
    return from_word(__atomic_fetch_and(p, bits, __ATOMIC_SEQ_CST));
}

/* ======================================================================
 * 3. Mutex fast path (reserved)
 *
 * Add the Mutex lock/unlock fast path here; it should reuse word_at() and
 * the arena globals of section 1, and register its functions in
 * sp_methods below.
 * ====================================================================== */

/* ======================================================================
 * 4. Channel fast path (reserved)
 * ====================================================================== */

/* ======================================================================
 * 5. Module definition
 * ====================================================================== */

#define FASTCALL(name, func, doc) \
    {name, (PyCFunction)(void (*)(void))(func), METH_FASTCALL, doc}

static PyMethodDef sp_methods[] = {
    /* 1. arena */
    FASTCALL("attach", sp_attach, attach_doc),
    FASTCALL("detach", sp_detach, detach_doc),
    FASTCALL("arena", sp_arena, arena_doc),
    /* 2. atomics */
    FASTCALL("load", sp_load, load_doc),
    FASTCALL("store", sp_store, store_doc),
    FASTCALL("add", sp_add, add_doc),
    FASTCALL("cas", sp_cas, cas_doc),
    FASTCALL("swap", sp_swap, swap_doc),
    FASTCALL("fetch_or", sp_fetch_or, fetch_or_doc),
    FASTCALL("fetch_and", sp_fetch_and, fetch_and_doc),
    {NULL, NULL, 0, NULL},
};

static void
sp_free(void *Py_UNUSED(module))
{
    arena_release();
}

PyDoc_STRVAR(module_doc,
"mpgo._speedups: C accelerator for mpgo (shared-memory atomics on one\n"
"attached arena). Use it through mpgo._transport._atomic.");

static struct PyModuleDef sp_module = {
    PyModuleDef_HEAD_INIT,
    "mpgo._speedups",  /* m_name */
    module_doc,        /* m_doc */
    -1,                /* m_size: global state, single-phase init */
    sp_methods,        /* m_methods */
    NULL,              /* m_slots */
    NULL,              /* m_traverse */
    NULL,              /* m_clear */
    sp_free,           /* m_free */
};

PyMODINIT_FUNC
PyInit__speedups(void)
{
    PyObject *m = PyModule_Create(&sp_module);
    if (m == NULL) {
        return NULL;
    }
    if (PyModule_AddStringConstant(m, "IMPLEMENTATION", "c") < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

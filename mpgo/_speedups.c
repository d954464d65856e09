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
 *   3. Sync fast paths: MutexBase, AtomicBase (subclassed by mpgo/_sync.py)
 *   4. Channel fast path: ChanBase (subclassed by mpgo/_core/_chan.py)
 *   5. Messages in C: libzmq calls on pyzmq's sockets, the frame codec
 *   6. Module definition
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
#include <dlfcn.h>
#include <errno.h>
#include <stdint.h>
#include <time.h>

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
 * 3. Sync fast paths: MutexBase, AtomicBase
 *
 * mpgo/_sync.py subclasses these types. Only the uncontended paths live
 * here (one CAS, no message); anything else calls the Python slow path
 * method of the subclass (_lock_slow, _try_lock_slow, _unlock_slow) with the
 * same arguments.  The mutex word layout is the one of mpgo/_sync.py:
 *     LOCKED = 1, owner (worker id + 1) in bits 8..23, other bits: waiters,
 *     woken, starving, poisoned -- any of which sends us to the slow path.
 * The fast path runs only on the worker's hub thread (set_hub); any other
 * thread (a foreign OS thread, or a process that is not a worker) takes the
 * slow path, which raises a clear error (F21).
 * ====================================================================== */

#include "pythread.h"

#define MU_LOCKED     ((uint64_t)1)
#define MU_OWNER_MASK ((uint64_t)0xFFFF << 8)

static unsigned long hub_thread = 0;   /* ident of the worker's hub thread */
static uint64_t owner_bits = 0;        /* (worker id + 1) << 8 */

PyDoc_STRVAR(set_hub_doc,
"set_hub(thread_ident, worker_id, /)\n--\n\n"
"Enable the sync fast paths on this thread, for worker `worker_id`\n"
"(thread_ident 0 disables them).");

static PyObject *
sp_set_hub(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long ident;
    long wid;

    CHECK_NARGS("set_hub", 2);
    ident = PyLong_AsUnsignedLong(args[0]);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    wid = PyLong_AsLong(args[1]);
    if (wid == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (wid < 0 || wid > 0xFFFE) {
        PyErr_SetString(PyExc_ValueError, "worker id out of range");
        return NULL;
    }
    hub_thread = ident;
    owner_bits = ((uint64_t)(wid + 1)) << 8;
    Py_RETURN_NONE;
}

typedef struct {
    PyObject_HEAD
    uint64_t *word;          /* the slot's state word in the arena */
    Py_ssize_t off;          /* its byte offset (what pickles) */
} SyncObject;

static int
sync_set_off(SyncObject *self, PyObject *off_obj)
{
    uint64_t *p = word_at(off_obj);
    if (p == NULL) {
        return -1;
    }
    self->word = p;
    self->off = (Py_ssize_t)((char *)p - arena_base);
    return 0;
}

static int
sync_init(SyncObject *self, PyObject *args, PyObject *kwds)
{
    PyObject *off_obj;
    if (kwds != NULL && PyDict_GET_SIZE(kwds) != 0) {
        PyErr_SetString(PyExc_TypeError, "_sync_init() takes no keyword arguments");
        return -1;
    }
    if (!PyArg_UnpackTuple(args, "_sync_init", 1, 1, &off_obj)) {
        return -1;
    }
    return sync_set_off(self, off_obj);
}

/* The arena may be re-attached (a user fork copies it): resolve the word
 * from the offset again when the base moved. */
static inline uint64_t *
sync_word(SyncObject *self)
{
    if (self->word == NULL || (char *)self->word < arena_base
            || (char *)self->word >= arena_base + arena_len) {
        PyObject *o = PyLong_FromSsize_t(self->off);
        if (o == NULL) {
            return NULL;
        }
        int r = sync_set_off(self, o);
        Py_DECREF(o);
        if (r < 0) {
            return NULL;
        }
    }
    return self->word;
}

static PyObject *
sync_get_off(SyncObject *self, void *Py_UNUSED(closure))
{
    return PyLong_FromSsize_t(self->off);
}

static PyGetSetDef sync_getset[] = {
    {"_off", (getter)sync_get_off, NULL, "byte offset of the slot in the arena", NULL},
    {NULL, NULL, NULL, NULL, NULL},
};

static PyObject *
call_slow(PyObject *self, const char *name, PyObject *const *args, size_t nargsf,
          PyObject *kwnames)
{
    PyObject *meth_name = PyUnicode_InternFromString(name);
    PyObject *res;
    PyObject *stack[8];
    Py_ssize_t n = PyVectorcall_NARGS(nargsf);
    Py_ssize_t nk = kwnames ? PyTuple_GET_SIZE(kwnames) : 0;
    if (meth_name == NULL) {
        return NULL;
    }
    if (n + nk + 1 > 8) {
        Py_DECREF(meth_name);
        PyErr_SetString(PyExc_TypeError, "too many arguments");
        return NULL;
    }
    stack[0] = self;
    for (Py_ssize_t i = 0; i < n + nk; i++) {
        stack[i + 1] = args[i];
    }
    res = PyObject_VectorcallMethod(meth_name, stack,
                                    (size_t)(n + 1) | PY_VECTORCALL_ARGUMENTS_OFFSET,
                                    kwnames);
    Py_DECREF(meth_name);
    return res;
}

/* lock(timeout=None) -> bool */
static PyObject *
mutex_lock(PyObject *self, PyObject *const *args, size_t nargsf, PyObject *kwnames)
{
    if (PyVectorcall_NARGS(nargsf) == 0 && kwnames == NULL
            && PyThread_get_thread_ident() == hub_thread && hub_thread != 0) {
        uint64_t *p = sync_word((SyncObject *)self);
        uint64_t expected = 0;
        if (p == NULL) {
            return NULL;
        }
        if (__atomic_compare_exchange_n(p, &expected, MU_LOCKED | owner_bits, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            Py_RETURN_TRUE;
        }
    }
    return call_slow(self, "_lock_slow", args, nargsf, kwnames);
}

static PyObject *
mutex_try_lock(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (PyThread_get_thread_ident() == hub_thread && hub_thread != 0) {
        uint64_t *p = sync_word((SyncObject *)self);
        uint64_t expected = 0;
        if (p == NULL) {
            return NULL;
        }
        if (__atomic_compare_exchange_n(p, &expected, MU_LOCKED | owner_bits, 0,
                                        __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            Py_RETURN_TRUE;
        }
    }
    return call_slow(self, "_try_lock_slow", NULL, 0, NULL);
}

static PyObject *
mutex_unlock(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    if (PyThread_get_thread_ident() == hub_thread && hub_thread != 0) {
        uint64_t *p = sync_word((SyncObject *)self);
        uint64_t s;
        if (p == NULL) {
            return NULL;
        }
        s = __atomic_load_n(p, __ATOMIC_SEQ_CST);
        if ((s & ~MU_OWNER_MASK) == MU_LOCKED
                && __atomic_compare_exchange_n(p, &s, 0, 0,
                                               __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
            Py_RETURN_NONE;
        }
    }
    return call_slow(self, "_unlock_slow", NULL, 0, NULL);
}

static PyObject *
mutex_exit(PyObject *self, PyObject *const *Py_UNUSED(args), Py_ssize_t Py_UNUSED(nargs))
{
    PyObject *r = mutex_unlock(self, NULL);
    if (r == NULL) {
        return NULL;
    }
    Py_DECREF(r);
    Py_RETURN_FALSE;
}

static PyObject *
mutex_enter(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    return mutex_lock(self, NULL, 0, NULL);
}

static PyMethodDef mutex_methods[] = {
    {"lock", (PyCFunction)(void (*)(void))mutex_lock, METH_FASTCALL | METH_KEYWORDS,
     "lock(timeout=None) -> bool: acquire; the uncontended path is one CAS."},
    {"try_lock", (PyCFunction)mutex_try_lock, METH_NOARGS,
     "try_lock() -> bool: acquire if free, never wait."},
    {"unlock", (PyCFunction)mutex_unlock, METH_NOARGS,
     "unlock(): release; RuntimeError if not locked."},
    {"__enter__", (PyCFunction)mutex_enter, METH_NOARGS, NULL},
    {"__exit__", (PyCFunction)(void (*)(void))mutex_exit, METH_FASTCALL, NULL},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject MutexBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mpgo._speedups.MutexBase",
    .tp_basicsize = sizeof(SyncObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "Fast paths of mpgo.Mutex (subclassed in mpgo/_sync.py).",
    .tp_methods = mutex_methods,
    .tp_getset = sync_getset,
    .tp_init = (initproc)sync_init,
    .tp_new = PyType_GenericNew,
};

/* AtomicBase: an int64 word; every method works from any thread. */

static PyObject *
atom_load(PyObject *self, PyObject *Py_UNUSED(ignored))
{
    uint64_t *p = sync_word((SyncObject *)self);
    if (p == NULL) {
        return NULL;
    }
    return from_word(__atomic_load_n(p, __ATOMIC_SEQ_CST));
}

static PyObject *
atom_store(PyObject *self, PyObject *v)
{
    uint64_t x;
    uint64_t *p = sync_word((SyncObject *)self);
    if (p == NULL || as_int64(v, &x) < 0) {
        return NULL;
    }
    __atomic_store_n(p, x, __ATOMIC_SEQ_CST);
    Py_RETURN_NONE;
}

static PyObject *
atom_add(PyObject *self, PyObject *v)
{
    uint64_t x;
    uint64_t *p = sync_word((SyncObject *)self);
    if (p == NULL || as_int64(v, &x) < 0) {
        return NULL;
    }
    return from_word(__atomic_add_fetch(p, x, __ATOMIC_SEQ_CST));
}

static PyObject *
atom_swap(PyObject *self, PyObject *v)
{
    uint64_t x;
    uint64_t *p = sync_word((SyncObject *)self);
    if (p == NULL || as_int64(v, &x) < 0) {
        return NULL;
    }
    return from_word(__atomic_exchange_n(p, x, __ATOMIC_SEQ_CST));
}

static PyObject *
atom_cas(PyObject *self, PyObject *const *args, Py_ssize_t nargs)
{
    uint64_t old, new;
    uint64_t *p;
    CHECK_NARGS("cas", 2);
    p = sync_word((SyncObject *)self);
    if (p == NULL || as_int64(args[0], &old) < 0 || as_int64(args[1], &new) < 0) {
        return NULL;
    }
    if (__atomic_compare_exchange_n(p, &old, new, 0, __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        Py_RETURN_TRUE;
    }
    Py_RETURN_FALSE;
}

static PyMethodDef atom_methods[] = {
    {"load", (PyCFunction)atom_load, METH_NOARGS, "load() -> int"},
    {"store", (PyCFunction)atom_store, METH_O, "store(v)"},
    {"add", (PyCFunction)atom_add, METH_O, "add(delta) -> the new value"},
    {"swap", (PyCFunction)atom_swap, METH_O, "swap(v) -> the old value"},
    {"cas", (PyCFunction)(void (*)(void))atom_cas, METH_FASTCALL,
     "cas(old, new) -> bool"},
    {NULL, NULL, 0, NULL},
};

static PyTypeObject AtomicBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mpgo._speedups.AtomicBase",
    .tp_basicsize = sizeof(SyncObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE,
    .tp_doc = "An int64 word of the arena (subclassed as mpgo.AtomicInt).",
    .tp_methods = atom_methods,
    .tp_getset = sync_getset,
    .tp_init = (initproc)sync_init,
    .tp_new = PyType_GenericNew,
};

/* ======================================================================
 * 4. Channel fast path: ChanBase
 *
 * mpgo/_core/_chan.py subclasses ChanBase as Chan. The fields live here (so
 * C reads them at fixed offsets) and are exposed as the members _buf, _cap,
 * _recvq, _sendq, _closed, _id, _r, _stale that the Python code uses. Only
 * the buffered, no-waiter cases are done here: send into a buffer with room
 * and no parked receiver, receive from a non-empty buffer with no parked
 * sender. Everything else (and every call from a thread that is not the
 * hub's) calls the Python slow path (_send_slow, _recv_slow), which holds
 * the whole algorithm and the thread check. The queues are deques: a queue
 * that is not empty (even of stale select waiters) sends us to the slow path.
 * ====================================================================== */

#include "structmember.h"

static unsigned long chan_thread = 0;   /* the scheduler's hub thread */
/* Set by the worker's sysmon thread when the running goroutine has not
 * switched for a while: the next channel operation takes the Python slow
 * path, which yields (Go's cooperative preemption request). */
static volatile int preempt_req = 0;
static PyObject *deque_append = NULL;   /* collections.deque.append */
static PyObject *deque_popleft = NULL;  /* collections.deque.popleft */
static PyObject *str_send_slow = NULL;
static PyObject *str_send = NULL;
static PyObject *str_recv_slow = NULL;
/* The scheduler's G type and run queue (set_sched): a parked plain waiter
 * (a G in recvq/sendq, not a select waiter) is woken here the way
 * _sched.ready does it: value, status = RUNNABLE, runq.append. */
static PyObject *g_type = NULL;
static PyObject *runq = NULL;
static PyObject *sched_dict = NULL;      /* vars(_sched) */
static unsigned long long c_parks = 0;   /* parks done in C (tests read it) */
static PyObject *retry_obj = NULL;       /* _chan.RETRY */
static PyObject *int_running = NULL, *int_waiting = NULL;
static long hub_every = 64;
static PyObject *s_cur, *s_tick, *s_want_hub, *s_new_turn, *s_runnext, *s_spawnq,
                *s_killing, *s_running_mv, *s_running_at, *str_gr, *str_reason,
                *str_since, *str_waitq, *str_err, *str_id, *str_switch,
                *str_chan_send, *str_chan_receive;

static PyObject *str_ok = NULL, *str_value = NULL, *str_status = NULL;
static PyObject *int_runnable = NULL;

PyDoc_STRVAR(c_park_count_doc,
"c_park_count()\n--\n\n"
"How many channel operations of this process parked in C (for tests).");

static PyObject *
sp_c_park_count(PyObject *Py_UNUSED(module), PyObject *Py_UNUSED(ignored))
{
    return PyLong_FromUnsignedLongLong(c_parks);
}

PyDoc_STRVAR(set_sched_doc,
"set_sched(G, runq, sched_dict, retry, /)\n--\n\n"
"The scheduler's goroutine type, run queue and module dict, and the channels'\n"
"RETRY marker: for hand-offs and parks done in C.");

static PyObject *
sp_set_sched(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    PyObject *every, *running, *waiting;
    CHECK_NARGS("set_sched", 4);
    if (!PyDict_Check(args[2])) {
        PyErr_SetString(PyExc_TypeError, "set_sched: sched_dict must be a dict");
        return NULL;
    }
    every = PyDict_GetItemString(args[2], "HUB_EVERY");
    running = PyDict_GetItemString(args[2], "RUNNING");
    waiting = PyDict_GetItemString(args[2], "WAITING");
    if (every == NULL || running == NULL || waiting == NULL) {
        PyErr_SetString(PyExc_TypeError, "set_sched: not the scheduler's dict");
        return NULL;
    }
    hub_every = PyLong_AsLong(every);
    if (hub_every <= 0) {
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_ValueError, "set_sched: HUB_EVERY must be positive");
        }
        return NULL;
    }
    Py_XSETREF(g_type, Py_NewRef(args[0]));
    Py_XSETREF(runq, Py_NewRef(args[1]));
    Py_XSETREF(sched_dict, Py_NewRef(args[2]));
    Py_XSETREF(retry_obj, Py_NewRef(args[3]));
    Py_XSETREF(int_running, Py_NewRef(running));
    Py_XSETREF(int_waiting, Py_NewRef(waiting));
    Py_RETURN_NONE;
}

/* Make parked goroutine g runnable with `value` (and ok=True). 0 or -1. */
static int
ready_g(PyObject *g, PyObject *value, int set_ok)
{
    PyObject *stack[2];
    PyObject *r;
    if ((set_ok && PyObject_SetAttr(g, str_ok, Py_True) < 0)
            || PyObject_SetAttr(g, str_value, value) < 0
            || PyObject_SetAttr(g, str_status, int_runnable) < 0) {
        return -1;
    }
    stack[0] = runq;
    stack[1] = g;
    r = PyObject_Vectorcall(deque_append, stack, 2, NULL);
    if (r == NULL) {
        return -1;
    }
    Py_DECREF(r);
    return 0;
}

/* Pop the head of q if it is a plain parked goroutine; NULL (no error) if not. */
static PyObject *
pop_plain_waiter(PyObject *q)
{
    PyObject *w;
    if (Py_SIZE(q) == 0 || g_type == NULL || runq == NULL) {
        return NULL;
    }
    w = PySequence_GetItem(q, 0);
    if (w == NULL) {
        return NULL;
    }
    if ((PyObject *)Py_TYPE(w) != g_type) {
        Py_DECREF(w);
        return NULL;
    }
    Py_DECREF(w);
    return PyObject_CallOneArg(deque_popleft, q);
}

PyDoc_STRVAR(set_thread_doc,
"set_thread(thread_ident, /)\n--\n\n"
"The thread whose scheduler owns local channels (0: none).");

static PyObject *
sp_set_thread(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    unsigned long ident;
    CHECK_NARGS("set_thread", 1);
    ident = PyLong_AsUnsignedLong(args[0]);
    if (ident == (unsigned long)-1 && PyErr_Occurred()) {
        return NULL;
    }
    chan_thread = ident;
    Py_RETURN_NONE;
}

PyDoc_STRVAR(set_preempt_doc,
"set_preempt(flag, /)\n--\n\n"
"Nonzero: local channel operations take the slow path (which yields).");

static PyObject *
sp_set_preempt(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    int flag;
    CHECK_NARGS("set_preempt", 1);
    flag = PyObject_IsTrue(args[0]);
    if (flag < 0) {
        return NULL;
    }
    preempt_req = flag;
    Py_RETURN_NONE;
}

typedef struct {
    PyObject_HEAD
    PyObject *buf;           /* deque of values */
    PyObject *recvq;         /* deque of parked receivers */
    PyObject *sendq;         /* deque of parked senders */
    PyObject *r;             /* remote state (promoted channels) */
    Py_ssize_t cap;
    long long id;
    int stale;
    char closed;
} ChanObject;

static int
chan_traverse(ChanObject *self, visitproc visit, void *arg)
{
    Py_VISIT(self->buf);
    Py_VISIT(self->recvq);
    Py_VISIT(self->sendq);
    Py_VISIT(self->r);
    return 0;
}

static int
chan_clear(ChanObject *self)
{
    Py_CLEAR(self->buf);
    Py_CLEAR(self->recvq);
    Py_CLEAR(self->sendq);
    Py_CLEAR(self->r);
    return 0;
}

/* A static base type: the subclass's subtype_dealloc owns the type's
 * reference and the weakrefs; we only release our fields. */
static void
chan_dealloc(ChanObject *self)
{
    PyObject_GC_UnTrack(self);
    chan_clear(self);
    Py_TYPE(self)->tp_free((PyObject *)self);
}

static inline int
chan_fast_ok(ChanObject *self)
{
    return chan_thread != 0 && !preempt_req && PyThread_get_thread_ident() == chan_thread
        && self->buf != NULL && self->recvq != NULL && self->sendq != NULL;
}

/* ----------------------------------------------------------------------
 * Parking in C: a channel operation that must wait (an unbuffered send
 * with no receiver, a receive from an empty channel) parks the goroutine
 * and switches straight to the next runnable one, as the common case of
 * _sched.park + _sched._schedule does. Only that case: when the hub wants
 * its turn, a preemption or a kill is pending, or the next goroutine is
 * new, nothing is touched and the Python method runs (it holds the whole
 * algorithm). The scheduler's globals are read from its module dict.
 * ---------------------------------------------------------------------- */

/* A borrowed global of _sched, NULL (no exception) if missing. */
static PyObject *
sched_get(PyObject *name)
{
    PyObject *o = PyDict_GetItemWithError(sched_dict, name);
    if (o == NULL) {
        PyErr_Clear();
    }
    return o;
}

/* Whether park_here may run: the current goroutine (borrowed) in *gp and
 * the next tick in *tickp. No side effect. */
static int
park_possible(PyObject **gp, long long *tickp)
{
    PyObject *cur, *tick, *runnext, *spawnq, *g2, *gr;
    long long t;
    if (sched_dict == NULL || retry_obj == NULL || runq == NULL || preempt_req) {
        return 0;
    }
    cur = sched_get(s_cur);
    tick = sched_get(s_tick);
    if (cur == NULL || cur == Py_None || tick == NULL || !PyLong_CheckExact(tick)
            || sched_get(s_killing) != Py_False || sched_get(s_want_hub) != Py_False) {
        return 0;
    }
    t = PyLong_AsLongLong(tick);
    if (t == -1 && PyErr_Occurred()) {
        PyErr_Clear();
        return 0;
    }
    if ((t + 1) % hub_every == 0 || Py_SIZE(runq) == 0) {
        return 0;                       /* the hub's turn, or nothing to switch to */
    }
    runnext = sched_get(s_runnext);
    spawnq = sched_get(s_spawnq);
    if (runnext == NULL || spawnq == NULL) {
        return 0;
    }
    if (sched_get(s_new_turn) == Py_True && (runnext != Py_None || PyObject_Length(spawnq) != 0)) {
        PyErr_Clear();
        return 0;                       /* new goroutines' turn: _pick decides */
    }
    /* the head of the run queue must be started (it has a greenlet) */
    g2 = PySequence_GetItem(runq, 0);
    if (g2 == NULL) {
        PyErr_Clear();
        return 0;
    }
    gr = PyObject_GetAttr(g2, str_gr);
    Py_DECREF(g2);
    if (gr == NULL) {
        PyErr_Clear();
        return 0;
    }
    Py_DECREF(gr);
    if (gr == Py_None) {
        return 0;
    }
    *gp = cur;
    *tickp = t + 1;
    return 1;
}

/* Park g (queued on a wait queue `q` by the caller) and run the next
 * goroutine; return park's value once g is resumed (a new reference), or
 * NULL with the error it was woken with. Call only after park_possible said
 * yes, with no Python code run since. */
static PyObject *
park_here(PyObject *g, PyObject *q, long long tick, PyObject *reason)
{
    PyObject *g2 = NULL, *gr = NULL, *o, *mv, *at, *id, *err, *v;
    struct timespec ts;
    int rc;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    o = PyFloat_FromDouble((double)ts.tv_sec + ts.tv_nsec * 1e-9);
    if (o == NULL) {
        return NULL;
    }
    rc = PyObject_SetAttr(g, str_waitq, q) < 0 || PyObject_SetAttr(g, str_status, int_waiting) < 0
         || PyObject_SetAttr(g, str_reason, reason) < 0 || PyObject_SetAttr(g, str_since, o) < 0;
    Py_DECREF(o);
    if (rc) {
        return NULL;
    }
    /* _schedule's common case: tick, take the runq head, make it current */
    o = PyLong_FromLongLong(tick);
    if (o == NULL || PyDict_SetItem(sched_dict, s_tick, o) < 0) {
        Py_XDECREF(o);
        return NULL;
    }
    Py_DECREF(o);
    g2 = PyObject_CallOneArg(deque_popleft, runq);
    if (g2 == NULL || PyDict_SetItem(sched_dict, s_new_turn, Py_True) < 0
            || PyDict_SetItem(sched_dict, s_cur, g2) < 0
            || PyObject_SetAttr(g2, str_status, int_running) < 0) {
        goto fail;
    }
    mv = sched_get(s_running_mv);
    at = sched_get(s_running_at);
    id = PyObject_GetAttr(g2, str_id);
    if (mv == NULL || at == NULL || id == NULL || PyObject_SetItem(mv, at, id) < 0) {
        Py_XDECREF(id);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "mpgo: scheduler state missing");
        }
        goto fail;
    }
    Py_DECREF(id);
    gr = PyObject_GetAttr(g2, str_gr);
    Py_CLEAR(g2);
    if (gr == NULL) {
        goto fail;
    }
    c_parks++;
    o = PyObject_CallMethodNoArgs(gr, str_switch);
    Py_CLEAR(gr);
    if (o == NULL) {
        return NULL;                    /* thrown in (the run is being torn down) */
    }
    Py_DECREF(o);
    /* resumed: park's tail */
    if (PyObject_SetAttr(g, str_waitq, Py_None) < 0) {
        return NULL;
    }
    err = PyObject_GetAttr(g, str_err);
    if (err == NULL) {
        return NULL;
    }
    if (err != Py_None) {
        if (PyObject_SetAttr(g, str_err, Py_None) < 0) {
            Py_DECREF(err);
            return NULL;
        }
        PyErr_SetObject(PyExceptionInstance_Class(err), err);
        Py_DECREF(err);
        return NULL;
    }
    Py_DECREF(err);
    v = PyObject_GetAttr(g, str_value);
    return v;
fail:
    Py_XDECREF(g2);
    Py_XDECREF(gr);
    return NULL;
}


/* An unbuffered send with no receiver, or a full buffer: park in C.
 * 1: done (*out: a new reference, park's value); 0: not here; -1: error. */
static int
chan_park_send(ChanObject *self, PyObject *v, PyObject **out)
{
    PyObject *g, *r, *stack[2];
    long long tick;
    Py_ssize_t n;
    if (!chan_fast_ok(self) || self->closed || Py_SIZE(self->recvq) != 0) {
        return 0;
    }
    if (self->cap > 0) {
        n = PyObject_Length(self->buf);
        if (n < 0) {
            return -1;
        }
        if (n < self->cap) {
            return 0;
        }
    }
    if (!park_possible(&g, &tick)) {
        return 0;
    }
    Py_INCREF(g);
    stack[0] = self->sendq;
    stack[1] = g;
    if (PyObject_SetAttr(g, str_value, v) < 0
            || (r = PyObject_Vectorcall(deque_append, stack, 2, NULL)) == NULL) {
        Py_DECREF(g);
        return -1;
    }
    Py_DECREF(r);
    *out = park_here(g, self->sendq, tick, str_chan_send);
    Py_DECREF(g);
    return *out == NULL ? -1 : 1;
}

/* A receive from an empty channel with no sender: park in C.
 * 1: *vp (new) and *okp (new) are the result; 2: woken with RETRY (the
 * caller goes to Python); 0: not here; -1: error. */
static int
chan_park_recv(ChanObject *self, PyObject **vp, PyObject **okp)
{
    PyObject *g, *r, *stack[2];
    long long tick;
    Py_ssize_t n;
    if (!chan_fast_ok(self) || self->closed || Py_SIZE(self->sendq) != 0) {
        return 0;
    }
    n = PyObject_Length(self->buf);
    if (n != 0) {
        return n < 0 ? -1 : 0;
    }
    if (!park_possible(&g, &tick)) {
        return 0;
    }
    Py_INCREF(g);
    stack[0] = self->recvq;
    stack[1] = g;
    if ((r = PyObject_Vectorcall(deque_append, stack, 2, NULL)) == NULL) {
        Py_DECREF(g);
        return -1;
    }
    Py_DECREF(r);
    r = park_here(g, self->recvq, tick, str_chan_receive);
    if (r == NULL) {
        Py_DECREF(g);
        return -1;
    }
    if (r == retry_obj) {
        Py_DECREF(r);
        Py_DECREF(g);
        return 2;
    }
    *okp = PyObject_GetAttr(g, str_ok);
    Py_DECREF(g);
    if (*okp == NULL) {
        Py_DECREF(r);
        return -1;
    }
    *vp = r;
    return 1;
}

static PyObject *
chan_send(PyObject *op, PyObject *v)
{
    ChanObject *self = (ChanObject *)op;
    if (chan_fast_ok(self) && !self->closed && Py_SIZE(self->recvq) > 0) {
        /* a receiver is parked: hand v over (Go's send to a waiting receiver) */
        PyObject *g = pop_plain_waiter(self->recvq);
        if (g != NULL) {
            int r = ready_g(g, v, 1);
            Py_DECREF(g);
            if (r < 0) {
                return NULL;
            }
            Py_RETURN_NONE;
        }
        if (PyErr_Occurred()) {
            return NULL;
        }
    }
    else if (chan_fast_ok(self) && !self->closed && self->cap > 0
            && Py_SIZE(self->recvq) == 0) {
        Py_ssize_t n = PyObject_Length(self->buf);
        if (n < 0) {
            return NULL;
        }
        if (n < self->cap) {
            PyObject *stack[2] = {self->buf, v};
            PyObject *r = PyObject_Vectorcall(deque_append, stack, 2, NULL);
            if (r == NULL) {
                return NULL;
            }
            Py_DECREF(r);
            Py_RETURN_NONE;
        }
    }
    {
        PyObject *r = NULL;
        int k = chan_park_send(self, v, &r);
        if (k < 0) {
            return NULL;
        }
        if (k > 0) {
            if (r == retry_obj) {           /* promoted meanwhile: its own send */
                Py_DECREF(r);
                return PyObject_CallMethodOneArg(op, str_send, v);
            }
            Py_DECREF(r);
            Py_RETURN_NONE;
        }
    }
    return PyObject_CallMethodOneArg(op, str_send_slow, v);
}

/* A value taken without parking, or NULL (no exception) to go slow:
 * the head of a buffer nobody waits to fill, or the value of a parked
 * sender on an empty channel (Go's receive from a waiting sender). */
static PyObject *
chan_take(ChanObject *self)
{
    Py_ssize_t n;
    if (!chan_fast_ok(self)) {
        return NULL;
    }
    n = PyObject_Length(self->buf);
    if (n < 0) {
        return NULL;
    }
    if (Py_SIZE(self->sendq) == 0) {
        if (n > 0) {
            return PyObject_CallOneArg(deque_popleft, self->buf);
        }
        return NULL;
    }
    if (n == 0) {
        PyObject *g = pop_plain_waiter(self->sendq);
        PyObject *v;
        if (g == NULL) {
            return NULL;
        }
        v = PyObject_GetAttr(g, str_value);
        if (v == NULL || ready_g(g, Py_None, 0) < 0) {
            Py_XDECREF(v);
            Py_DECREF(g);
            return NULL;
        }
        Py_DECREF(g);
        return v;
    }
    return NULL;
}

/* op._recv_slow(), checked to be a (value, ok) pair; NULL with an exception. */
static PyObject *
recv_slow_pair(PyObject *op)
{
    PyObject *pair = PyObject_CallMethodNoArgs(op, str_recv_slow);
    if (pair != NULL && (!PyTuple_Check(pair) || PyTuple_GET_SIZE(pair) != 2)) {
        Py_DECREF(pair);
        PyErr_SetString(PyExc_SystemError, "_recv_slow must return (value, ok)");
        return NULL;
    }
    return pair;
}

static PyObject *
chan_recv(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PyObject *v = chan_take((ChanObject *)op);
    PyObject *pair, *ok;
    int k;
    if (v != NULL || PyErr_Occurred()) {
        return v;
    }
    k = chan_park_recv((ChanObject *)op, &v, &ok);
    if (k < 0) {
        return NULL;
    }
    if (k == 1) {
        Py_DECREF(ok);
        return v;
    }
    pair = recv_slow_pair(op);
    if (pair == NULL) {
        return NULL;
    }
    v = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    Py_DECREF(pair);
    return v;
}

static PyObject *
chan_recv_ok(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    PyObject *v = chan_take((ChanObject *)op);
    if (v != NULL) {
        PyObject *pair = PyTuple_Pack(2, v, Py_True);
        Py_DECREF(v);
        return pair;
    }
    if (PyErr_Occurred()) {
        return NULL;
    }
    {
        PyObject *ok, *pair;
        int k = chan_park_recv((ChanObject *)op, &v, &ok);
        if (k < 0) {
            return NULL;
        }
        if (k == 1) {
            pair = PyTuple_Pack(2, v, ok);
            Py_DECREF(v);
            Py_DECREF(ok);
            return pair;
        }
    }
    return PyObject_CallMethodNoArgs(op, str_recv_slow);
}

static PyObject *
chan_iter(PyObject *op)
{
    return Py_NewRef(op);
}

/* _remote.RemoteChan, whose iteration starts here too (set_remote_type): a
 * `__next__` defined in a Python class would go through slot_tp_iternext,
 * a method lookup and call per value (W4's consumer). */
static PyTypeObject *rc_type = NULL;
static PyObject *rc_next_op(PyObject *op);

static PyObject *
chan_iternext(PyObject *op)
{
    PyObject *v, *pair, *ok;
    int k;
    if (Py_TYPE(op) == rc_type) {
        return rc_next_op(op);
    }
    v = chan_take((ChanObject *)op);
    if (v != NULL || PyErr_Occurred()) {
        return v;
    }
    k = chan_park_recv((ChanObject *)op, &v, &ok);
    if (k < 0) {
        return NULL;
    }
    if (k == 1) {
        int t = PyObject_IsTrue(ok);
        Py_DECREF(ok);
        if (t <= 0) {
            Py_DECREF(v);
            return NULL;      /* StopIteration (t == 0) or an error */
        }
        return v;
    }
    pair = recv_slow_pair(op);
    if (pair == NULL) {
        return NULL;
    }
    ok = PyTuple_GET_ITEM(pair, 1);
    if (!PyObject_IsTrue(ok)) {
        Py_DECREF(pair);
        return NULL;          /* StopIteration: closed and drained */
    }
    v = Py_NewRef(PyTuple_GET_ITEM(pair, 0));
    Py_DECREF(pair);
    return v;
}

/* ----------------------------------------------------------------------
 * Values on the wire (mpgo/_transport/_wire.py): the scalar cases in C.
 * wire_encode gives the bytes msgpack's Packer(use_bin_type=True,
 * strict_types=True) gives for an exact int (64-bit), float, bool, None,
 * str or bytes up to WIRE_SMALL bytes; wire_decode reads one such item
 * back. Everything else (containers, pickled values, big or odd values,
 * invalid UTF-8) goes to the Python functions set with set_wire, which hold
 * the whole format and its errors.
 * ---------------------------------------------------------------------- */

#define WIRE_SMALL (1 << 20)
static PyObject *wire_encode_py = NULL;   /* _wire._encode_py */
static PyObject *wire_decode_py = NULL;   /* _wire._decode_py */

static void
put_be(unsigned char *p, uint64_t v, int n)
{
    for (int i = n - 1; i >= 0; i--) {
        p[i] = (unsigned char)(v & 0xff);
        v >>= 8;
    }
}

static uint64_t
get_be(const unsigned char *p, int n)
{
    uint64_t v = 0;
    for (int i = 0; i < n; i++) {
        v = (v << 8) | p[i];
    }
    return v;
}

/* The msgpack form of a scalar, as msgpack's Packer(use_bin_type=True)
 * writes it: a header (hdr, *hn bytes) followed by *n payload bytes at
 * *data (none for numbers, bool and None). 0 for an exact int within 64
 * bits, float, bool, None, str or bytes under 4 GiB; 1, with nothing set and
 * no exception, for anything else. Both encoders (a value, a message) use it. */
static int
scalar_head(PyObject *v, unsigned char hdr[9], int *hn, const char **data, Py_ssize_t *n)
{
    PyTypeObject *t = Py_TYPE(v);
    *data = NULL;
    *n = 0;
    if (t == &PyLong_Type) {
        int overflow;
        long long x = PyLong_AsLongLongAndOverflow(v, &overflow);
        if (overflow > 0) {
            unsigned long long u = PyLong_AsUnsignedLongLong(v);
            if (u == (unsigned long long)-1 && PyErr_Occurred()) {
                PyErr_Clear();
                return 1;
            }
            hdr[0] = 0xcf;
            put_be(hdr + 1, u, 8);
            *hn = 9;
        } else if (overflow < 0 || (x == -1 && PyErr_Occurred())) {
            PyErr_Clear();
            return 1;
        } else if (x >= 0) {
            if (x < 128) { hdr[0] = (unsigned char)x; *hn = 1; }
            else if (x < 256) { hdr[0] = 0xcc; hdr[1] = (unsigned char)x; *hn = 2; }
            else if (x < 65536) { hdr[0] = 0xcd; put_be(hdr + 1, (uint64_t)x, 2); *hn = 3; }
            else if (x < 4294967296LL) { hdr[0] = 0xce; put_be(hdr + 1, (uint64_t)x, 4); *hn = 5; }
            else { hdr[0] = 0xcf; put_be(hdr + 1, (uint64_t)x, 8); *hn = 9; }
        } else {
            if (x >= -32) { hdr[0] = (unsigned char)(x & 0xff); *hn = 1; }
            else if (x >= -128) { hdr[0] = 0xd0; hdr[1] = (unsigned char)(x & 0xff); *hn = 2; }
            else if (x >= -32768) { hdr[0] = 0xd1; put_be(hdr + 1, (uint64_t)x, 2); *hn = 3; }
            else if (x >= -2147483648LL) { hdr[0] = 0xd2; put_be(hdr + 1, (uint64_t)x, 4); *hn = 5; }
            else { hdr[0] = 0xd3; put_be(hdr + 1, (uint64_t)x, 8); *hn = 9; }
        }
        return 0;
    }
    if (t == &PyFloat_Type) {
        union { double d; uint64_t u; } cv;
        cv.d = PyFloat_AS_DOUBLE(v);
        hdr[0] = 0xcb;
        put_be(hdr + 1, cv.u, 8);
        *hn = 9;
        return 0;
    }
    if (v == Py_None || v == Py_True || v == Py_False) {
        hdr[0] = v == Py_None ? 0xc0 : v == Py_True ? 0xc3 : 0xc2;
        *hn = 1;
        return 0;
    }
    if (t == &PyUnicode_Type || t == &PyBytes_Type) {
        Py_ssize_t len;
        if (t == &PyUnicode_Type) {
            const char *u = PyUnicode_AsUTF8AndSize(v, &len);
            if (u == NULL) {                /* surrogates: msgpack's error, in Python */
                PyErr_Clear();
                return 1;
            }
            if ((uint64_t)len > 0xffffffffULL) return 1;
            if (len < 32) { hdr[0] = (unsigned char)(0xa0 | len); *hn = 1; }
            else if (len < 256) { hdr[0] = 0xd9; hdr[1] = (unsigned char)len; *hn = 2; }
            else if (len < 65536) { hdr[0] = 0xda; put_be(hdr + 1, (uint64_t)len, 2); *hn = 3; }
            else { hdr[0] = 0xdb; put_be(hdr + 1, (uint64_t)len, 4); *hn = 5; }
            *data = u;
        } else {
            len = PyBytes_GET_SIZE(v);
            if ((uint64_t)len > 0xffffffffULL) return 1;
            if (len < 256) { hdr[0] = 0xc4; hdr[1] = (unsigned char)len; *hn = 2; }
            else if (len < 65536) { hdr[0] = 0xc5; put_be(hdr + 1, (uint64_t)len, 2); *hn = 3; }
            else { hdr[0] = 0xc6; put_be(hdr + 1, (uint64_t)len, 4); *hn = 5; }
            *data = PyBytes_AS_STRING(v);
        }
        *n = len;
        return 0;
    }
    return 1;
}

/* New bytes for v, or NULL without an exception when v is not a scalar
 * handled here (NULL with one only on memory errors). */
static PyObject *
wire_encode_scalar(PyObject *v)
{
    unsigned char hdr[9];
    int hn;
    const char *data;
    Py_ssize_t n;
    PyObject *out;
    if (scalar_head(v, hdr, &hn, &data, &n) != 0 || n > WIRE_SMALL) {
        return NULL;                        /* the size limit lives in Python */
    }
    out = PyBytes_FromStringAndSize(NULL, hn + n);
    if (out != NULL) {
        memcpy(PyBytes_AS_STRING(out), hdr, hn);
        if (n) {
            memcpy(PyBytes_AS_STRING(out) + hn, data, n);
        }
    }
    return out;
}

static PyObject *wire_unpack_obj(const unsigned char **pp, const unsigned char *end,
                                 int depth);

/* The value of b when it is exactly one scalar item (any width msgpack
 * allows; read by the message decoder, wire_unpack_obj); NULL without an
 * exception otherwise, containers included (a value's lists and maps may
 * hold pickled items: Python's). */
static PyObject *
wire_decode_scalar(PyObject *b)
{
    const unsigned char *p, *end;
    unsigned char c;
    PyObject *v;
    if (!PyBytes_CheckExact(b) || PyBytes_GET_SIZE(b) < 1) {
        return NULL;
    }
    p = (const unsigned char *)PyBytes_AS_STRING(b);
    end = p + PyBytes_GET_SIZE(b);
    c = p[0];
    if ((c >= 0x80 && c <= 0x9f) || (c >= 0xdc && c <= 0xdf)) {
        return NULL;
    }
    v = wire_unpack_obj(&p, end, 0);
    if (v != NULL && p != end) {
        Py_DECREF(v);                       /* trailing bytes: Python's error */
        return NULL;
    }
    return v;
}

/* What the C scalar codec returned for arg (`r`, NULL without an exception
 * when it does not handle it), else the Python codec `fn` set by set_wire. */
static PyObject *
wire_or_py(PyObject *r, PyObject *fn, PyObject *arg)
{
    if (r != NULL || PyErr_Occurred()) {
        return r;
    }
    if (fn == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mpgo._speedups: set_wire was not called");
        return NULL;
    }
    return PyObject_CallOneArg(fn, arg);
}

static PyObject *
wire_encode_impl(PyObject *v)
{
    return wire_or_py(wire_encode_scalar(v), wire_encode_py, v);
}

static PyObject *
wire_decode_impl(PyObject *b)
{
    return wire_or_py(wire_decode_scalar(b), wire_decode_py, b);
}

PyDoc_STRVAR(wire_encode_doc,
"wire_encode(v, /)\n--\n\n"
"_wire.encode: scalars in C, anything else through set_wire's encode.");

static PyObject *
sp_wire_encode(PyObject *Py_UNUSED(module), PyObject *v)
{
    return wire_encode_impl(v);
}

PyDoc_STRVAR(wire_decode_doc,
"wire_decode(b, /)\n--\n\n"
"_wire.decode: scalars in C, anything else through set_wire's decode.");

static PyObject *
sp_wire_decode(PyObject *Py_UNUSED(module), PyObject *b)
{
    return wire_decode_impl(b);
}

PyDoc_STRVAR(set_wire_doc,
"set_wire(encode, decode, /)\n--\n\n"
"The Python codec for what wire_encode/wire_decode do not handle in C.");

static PyObject *
sp_set_wire(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("set_wire", 2);
    Py_XSETREF(wire_encode_py, Py_NewRef(args[0]));
    Py_XSETREF(wire_decode_py, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}

/* ----------------------------------------------------------------------
 * Pair rings (docs/design.md §6.9): a single-producer single-consumer byte
 * ring in the arena, from the one sending worker of a pair-mode channel to
 * the worker that homes it. The sender writes encoded values, the home reads
 * them; credit is a counter the home raises. Layout at `off` (each group of
 * words on its own cache line; who writes it in brackets):
 *   +0   wpos   bytes written, ever          [sender]
 *   +8   nput   entries written, ever        [sender]
 *   +64  rpos   bytes read, ever             [home]
 *   +72  grant  credit granted here, ever    [home]
 *   +128 hwait  1: the home wants a wake-up frame at the next write [home sets, sender clears]
 *   +192 pwait  1: a sender waits for credit or room [sender sets, home clears]
 *   +256 data   RING_DATA bytes; an entry is a 4-byte length, then the value;
 *               length RING_MARK: the value comes in a CH_BIG frame instead.
 * Positions only grow; free room = RING_DATA - (wpos - rpos). The sender
 * publishes wpos and the home rpos with sequentially consistent stores, each
 * then reading the other side's wait flag (Dekker): a write and a wait can
 * never both miss each other.
 * ---------------------------------------------------------------------- */

#define RING_DATA 65536u
#define RING_HEAD 256u
#define RING_MARK 0xFFFFFFFFu
#define RG_WPOS 0
#define RG_NPUT 8
#define RG_RPOS 64
#define RG_GRANT 72
#define RG_HWAIT 128
#define RG_PWAIT 192

#define RGW(r, o) ((uint64_t *)((r) + (o)))

/* The ring at arena offset off_obj, or NULL with an exception. */
static char *
ring_at(PyObject *off_obj)
{
    long long off = PyLong_AsLongLong(off_obj);
    if (off == -1 && PyErr_Occurred()) {
        return NULL;
    }
    if (arena_base == NULL || off < 0 || (off & 63) != 0
            || off + (long long)(RING_HEAD + RING_DATA) > (long long)arena_len) {
        PyErr_Format(PyExc_ValueError, "no ring at arena offset %lld", off);
        return NULL;
    }
    return arena_base + off;
}

static void
ring_copy_in(char *r, uint64_t pos, const void *src, size_t n)
{
    size_t at = (size_t)(pos % RING_DATA), first = RING_DATA - at;
    char *data = r + RING_HEAD;
    if (first >= n) {
        memcpy(data + at, src, n);
    } else {
        memcpy(data + at, src, first);
        memcpy(data, (const char *)src + first, n - first);
    }
}

static void
ring_copy_out(char *r, uint64_t pos, void *dst, size_t n)
{
    size_t at = (size_t)(pos % RING_DATA), first = RING_DATA - at;
    const char *data = r + RING_HEAD;
    if (first >= n) {
        memcpy(dst, data + at, n);
    } else {
        memcpy(dst, data + at, first);
        memcpy((char *)dst + first, data, n - first);
    }
}

/* Write one entry (mark: a CH_BIG placeholder). 0: no room (nothing
 * written); 1: written; 2: written, and the home asked to be woken (the
 * flag is cleared here: exactly one writer sends the wake-up). */
static int
ring_write(char *r, const char *p, uint32_t n, int mark)
{
    uint64_t w = __atomic_load_n(RGW(r, RG_WPOS), __ATOMIC_RELAXED);
    uint64_t rp = __atomic_load_n(RGW(r, RG_RPOS), __ATOMIC_ACQUIRE);
    uint64_t need = 4u + (mark ? 0u : n), one = 1;
    uint32_t hdr = mark ? RING_MARK : n;
    if ((uint64_t)RING_DATA - (w - rp) < need) {
        return 0;
    }
    ring_copy_in(r, w, &hdr, 4);
    if (!mark) {
        ring_copy_in(r, w + 4, p, n);
    }
    __atomic_store_n(RGW(r, RG_NPUT), __atomic_load_n(RGW(r, RG_NPUT), __ATOMIC_RELAXED) + 1,
                     __ATOMIC_RELAXED);
    __atomic_store_n(RGW(r, RG_WPOS), w + need, __ATOMIC_SEQ_CST);
    if (__atomic_load_n(RGW(r, RG_HWAIT), __ATOMIC_SEQ_CST)
            && __atomic_compare_exchange_n(RGW(r, RG_HWAIT), &one, 0, 0,
                                           __ATOMIC_SEQ_CST, __ATOMIC_SEQ_CST)) {
        return 2;
    }
    return 1;
}

PyDoc_STRVAR(ring_put_doc,
"ring_put(off, b, /)\n--\n\n"
"Sender side: append bytes b to the pair ring at arena offset off, or, with\n"
"b None, a CH_BIG placeholder. 0: no room (nothing written); 1: written;\n"
"2: written and the home asked for a wake-up frame (the caller sends it).");

static PyObject *
sp_ring_put(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    char *r;
    int rc;
    CHECK_NARGS("ring_put", 2);
    if ((r = ring_at(args[0])) == NULL) {
        return NULL;
    }
    if (args[1] == Py_None) {
        rc = ring_write(r, NULL, 0, 1);
    } else if (PyBytes_Check(args[1])) {
        Py_ssize_t n = PyBytes_GET_SIZE(args[1]);
        if (n > (Py_ssize_t)(RING_DATA / 4)) {
            PyErr_SetString(PyExc_ValueError, "ring_put: value too large for a ring entry");
            return NULL;
        }
        rc = ring_write(r, PyBytes_AS_STRING(args[1]), (uint32_t)n, 0);
    } else {
        PyErr_SetString(PyExc_TypeError, "ring_put: bytes or None required");
        return NULL;
    }
    return PyLong_FromLong(rc);
}

PyDoc_STRVAR(ring_take_doc,
"ring_take(off, nbig, /)\n--\n\n"
"Home side: every entry written to the ring at off and not yet read, in\n"
"order, as a list of bytes; a CH_BIG placeholder is None, and at most nbig\n"
"of them are taken (reading stops before the next one: its value has not\n"
"arrived). The room read is given back to the sender.");

static PyObject *
sp_ring_take(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    char *r;
    long long nbig;
    uint64_t rp, w;
    PyObject *out;
    CHECK_NARGS("ring_take", 2);
    if ((r = ring_at(args[0])) == NULL) {
        return NULL;
    }
    nbig = PyLong_AsLongLong(args[1]);
    if (nbig == -1 && PyErr_Occurred()) {
        return NULL;
    }
    rp = __atomic_load_n(RGW(r, RG_RPOS), __ATOMIC_RELAXED);
    w = __atomic_load_n(RGW(r, RG_WPOS), __ATOMIC_ACQUIRE);
    if ((out = PyList_New(0)) == NULL) {
        return NULL;
    }
    if (w - rp > RING_DATA) {
        Py_DECREF(out);
        PyErr_SetString(PyExc_SystemError, "ring_take: corrupt ring positions");
        return NULL;
    }
    while (rp != w) {
        uint32_t n;
        PyObject *b;
        ring_copy_out(r, rp, &n, 4);
        if (n == RING_MARK) {
            if (nbig <= 0) {
                break;
            }
            nbig--;
            rp += 4;
            b = Py_NewRef(Py_None);
        } else {
            if (n > RING_DATA / 4 || (uint64_t)n + 4 > w - rp) {
                Py_DECREF(out);
                PyErr_SetString(PyExc_SystemError, "ring_take: corrupt ring entry");
                return NULL;
            }
            b = PyBytes_FromStringAndSize(NULL, n);
            if (b == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            ring_copy_out(r, rp + 4, PyBytes_AS_STRING(b), n);
            rp += 4u + n;
        }
        if (PyList_Append(out, b) < 0) {
            Py_DECREF(b);
            Py_DECREF(out);
            return NULL;
        }
        Py_DECREF(b);
    }
    __atomic_store_n(RGW(r, RG_RPOS), rp, __ATOMIC_SEQ_CST);
    return out;
}

/* ----------------------------------------------------------------------
 * Promoted channels (RemoteChan, mpgo/_runtime/_remote.py): the two
 * per-value cases, in C. A send spends one credit the home granted
 * (the value is encoded and queued in px.puts; the hub frames it later);
 * a receive takes a value already delivered to px.cache. Everything else
 * (no credit, an empty cache, a credit or prefetch request to make, a
 * preemption or a hub turn due, another thread, a proxy of an older run)
 * goes to the Python method, which holds the whole protocol.
 * px is the channel's `_r` (a _remote._Px); its fields are read by name.
 * ---------------------------------------------------------------------- */

static PyObject *rc_dirty = NULL;        /* _remote._dirty (a set) */
static PyObject *rc_sched_dict = NULL;   /* _sched.__dict__ (_last_turn, TURN_AGE) */
static long long rc_run = -1;            /* the worker's current run */
static PyObject *s_last_turn, *s_turn_age, *s_rsend_slow, *s_rrecv_slow, *s_rnext_slow;
/* _Px is a class with __slots__: its fields are read and written at their
 * slot offsets (found once, from the member descriptors, by set_remote). */
static PyTypeObject *px_type = NULL;
static Py_ssize_t o_run = -1, o_closed_seen = -1, o_credits = -1, o_want_sent = -1,
                  o_grant = -1, o_puts = -1, o_cache = -1, o_cap = -1, o_spec_asked = -1,
                  o_prefetch = -1, o_drained = -1, o_consumed = -1, o_reported = -1,
                  o_ring = -1, o_gseen = -1;
static PyObject *rc_ring_wake = NULL;    /* _remote._ring_wake(px): the home asked */
#define PXF(px, off) (*(PyObject **)((char *)(px) + (off)))


PyDoc_STRVAR(set_remote_doc,
"set_remote(dirty, sched_dict, run, px_type, ring_wake, /)\n--\n\n"
"What the promoted-channel fast paths need; run is the worker's current run,\n"
"px_type the class of a channel's _r (_remote._Px, with __slots__),\n"
"ring_wake(px) what a ring send calls when the home asked to be woken.");

static const char *const px_fields[] = {
    "run", "closed_seen", "credits", "want_sent", "grant", "puts", "cache", "cap",
    "spec_asked", "prefetch", "drained", "consumed", "reported", "ring", "gseen",
};

static PyObject *
sp_set_remote(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    long long run;
    Py_ssize_t offs[sizeof px_fields / sizeof px_fields[0]];
    CHECK_NARGS("set_remote", 5);
    if (!PyAnySet_Check(args[0]) || !PyDict_Check(args[1]) || !PyType_Check(args[3])) {
        PyErr_SetString(PyExc_TypeError,
                        "set_remote: dirty must be a set, sched_dict a dict, px_type a class");
        return NULL;
    }
    run = PyLong_AsLongLong(args[2]);
    if (run == -1 && PyErr_Occurred()) {
        return NULL;
    }
    for (size_t i = 0; i < sizeof px_fields / sizeof px_fields[0]; i++) {
        PyObject *d = PyObject_GetAttrString(args[3], px_fields[i]);
        int ok;
        if (d == NULL) {
            return NULL;
        }
        ok = Py_IS_TYPE(d, &PyMemberDescr_Type)
             && ((PyMemberDescrObject *)d)->d_member->type == T_OBJECT_EX;
        if (ok) {
            offs[i] = ((PyMemberDescrObject *)d)->d_member->offset;
        }
        Py_DECREF(d);
        if (!ok) {
            PyErr_Format(PyExc_TypeError, "set_remote: %s is not a slot of px_type",
                         px_fields[i]);
            return NULL;
        }
    }
    o_run = offs[0]; o_closed_seen = offs[1]; o_credits = offs[2]; o_want_sent = offs[3];
    o_grant = offs[4]; o_puts = offs[5]; o_cache = offs[6]; o_cap = offs[7];
    o_spec_asked = offs[8]; o_prefetch = offs[9]; o_drained = offs[10]; o_consumed = offs[11];
    o_reported = offs[12]; o_ring = offs[13]; o_gseen = offs[14];
    Py_XSETREF(rc_ring_wake, Py_NewRef(args[4]));
    Py_XSETREF(rc_dirty, Py_NewRef(args[0]));
    Py_XSETREF(rc_sched_dict, Py_NewRef(args[1]));
    Py_XSETREF(px_type, (PyTypeObject *)Py_NewRef(args[3]));
    rc_run = run;
    Py_RETURN_NONE;
}

/* Field `off` of px: a new reference, or NULL with AttributeError when unset. */
static PyObject *
px_get(PyObject *px, Py_ssize_t off)
{
    PyObject *o = PXF(px, off);
    if (o == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_Px field not set");
        return NULL;
    }
    return Py_NewRef(o);
}

/* An int field of px as a C long long; -1 with an exception on failure. */
static int
px_ll(PyObject *px, Py_ssize_t off, long long *out)
{
    PyObject *o = PXF(px, off);
    if (o == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_Px field not set");
        return -1;
    }
    *out = PyLong_AsLongLong(o);
    return (*out == -1 && PyErr_Occurred()) ? -1 : 0;
}

/* A bool field of px: 1, 0, or -1 with an exception. */
static int
px_bool(PyObject *px, Py_ssize_t off)
{
    PyObject *o = PXF(px, off);
    if (o == Py_True || o == Py_False) {
        return o == Py_True;
    }
    if (o == NULL) {
        PyErr_SetString(PyExc_AttributeError, "_Px field not set");
        return -1;
    }
    return PyObject_IsTrue(o);
}

static int
px_set_ll(PyObject *px, Py_ssize_t off, long long v)
{
    PyObject *o = PyLong_FromLongLong(v);
    if (o == NULL) {
        return -1;
    }
    Py_XSETREF(PXF(px, off), o);
    return 0;
}

/* The proxy when the fast path may run: on the hub thread, no preemption
 * request, a hub turn not overdue (RemoteChan's TURN_AGE rule), a proxy of
 * this run. NULL (no exception) to go slow. Borrowed from the channel: valid
 * until Python code runs (callers take a reference before that). */
#define RC_CLOCK_EVERY 8
static unsigned long rc_ops = 0;

static PyObject *
rc_px(ChanObject *self)
{
    PyObject *px = self->r, *lt, *age;
    long long run;
    struct timespec ts;
    if (chan_thread == 0 || preempt_req || rc_sched_dict == NULL || px == NULL
            || Py_TYPE(px) != px_type || PyThread_get_thread_ident() != chan_thread) {
        return NULL;
    }
    /* The clock is read every RC_CLOCK_EVERY operations (a read costs as much
     * as the rest of the fast path): a due hub turn waits that many more. */
    if ((++rc_ops & (RC_CLOCK_EVERY - 1)) == 0) {
        lt = PyDict_GetItemWithError(rc_sched_dict, s_last_turn);
        age = lt != NULL ? PyDict_GetItemWithError(rc_sched_dict, s_turn_age) : NULL;
        if (lt == NULL || age == NULL || !PyFloat_Check(lt) || !PyFloat_Check(age)) {
            return NULL;
        }
        clock_gettime(CLOCK_MONOTONIC, &ts);     /* time.monotonic()'s clock */
        if ((double)ts.tv_sec + ts.tv_nsec * 1e-9 - PyFloat_AS_DOUBLE(lt)
                > PyFloat_AS_DOUBLE(age)) {
            rc_ops--;                 /* look again at the next operation */
            return NULL;
        }
    }
    if (px_ll(px, o_run, &run) < 0) {
        return NULL;
    }
    return run == rc_run ? px : NULL;
}

/* The Python method for a send the C paths leave to it (a field that could
 * not be read is not an error: Python decides). */
static PyObject *
rc_send_slow(PyObject *op, PyObject *v)
{
    if (PyErr_Occurred()) {
        PyErr_Clear();
    }
    return PyObject_CallMethodOneArg(op, s_rsend_slow, v);
}

/* A send on a channel whose pair ring px.ring is in use: spend one credit
 * (topped up from the ring's grant counter) and write the value into the
 * ring; the Python method for everything else (no credit or room, a value
 * too large for an entry, a closed channel). */
static PyObject *
rc_ring_send(PyObject *op, PyObject *px, PyObject *v)
{
    char *r;
    PyObject *b;
    long long credits, gseen;
    int rc;
    if (px_bool(px, o_closed_seen) != 0 || px_ll(px, o_credits, &credits) < 0
            || (r = ring_at(PXF(px, o_ring))) == NULL) {
        goto slow;
    }
    if (credits <= 0) {
        long long g = (long long)__atomic_load_n(RGW(r, RG_GRANT), __ATOMIC_ACQUIRE);
        if (px_ll(px, o_gseen, &gseen) < 0 || g <= gseen) {
            goto slow;
        }
        credits += g - gseen;
        if (px_set_ll(px, o_gseen, g) < 0 || px_set_ll(px, o_credits, credits) < 0) {
            goto slow;
        }
    }
    Py_INCREF(px);
    b = wire_encode_impl(v);                 /* TypeError here: nothing touched */
    if (b == NULL) {
        Py_DECREF(px);
        return NULL;
    }
    if (PyBytes_GET_SIZE(b) > (Py_ssize_t)(RING_DATA / 4)
            || (rc = ring_write(r, PyBytes_AS_STRING(b), (uint32_t)PyBytes_GET_SIZE(b), 0)) == 0) {
        Py_DECREF(b);
        Py_DECREF(px);
        goto slow;
    }
    Py_DECREF(b);
    if (px_set_ll(px, o_credits, credits - 1) < 0) {
        Py_DECREF(px);
        return NULL;              /* written: never retried */
    }
    if (rc == 2) {
        PyObject *res = PyObject_CallOneArg(rc_ring_wake, px);
        Py_DECREF(px);
        if (res == NULL) {
            return NULL;
        }
        Py_DECREF(res);
        Py_RETURN_NONE;
    }
    Py_DECREF(px);
    Py_RETURN_NONE;
slow:
    return rc_send_slow(op, v);
}

static PyObject *
chan_rc_send(PyObject *op, PyObject *v)
{
    PyObject *px = rc_px((ChanObject *)op);
    PyObject *b, *puts;
    long long credits, grant;
    int closed, want_sent;
    if (px == NULL) {
        goto slow;
    }
    if (PXF(px, o_ring) != NULL && PXF(px, o_ring) != Py_None) {
        return rc_ring_send(op, px, v);
    }
    if ((closed = px_bool(px, o_closed_seen)) != 0
            || px_ll(px, o_credits, &credits) < 0 || credits <= 0
            || (want_sent = px_bool(px, o_want_sent)) < 0
            || px_ll(px, o_grant, &grant) < 0
            /* a CH_WANT to send: once a quarter of the last grant is spent */
            || (!want_sent && credits - 1 <= grant * 3 / 4)) {
        goto slow;
    }
    /* encode may run user code (pickling): hold px, the channel's _r could change */
    Py_INCREF(px);
    b = wire_encode_impl(v);                 /* TypeError here: nothing touched */
    if (b == NULL) {
        Py_DECREF(px);
        return NULL;
    }
    /* px is in `dirty` whenever px.puts is not empty (every path that appends
     * adds it; a flush empties both together): only the first value adds it */
    puts = px_get(px, o_puts);
    if (puts == NULL || !PyList_Check(puts) || px_set_ll(px, o_credits, credits - 1) < 0
            || (PyList_GET_SIZE(puts) == 0 && PySet_Add(rc_dirty, px) < 0)
            || PyList_Append(puts, b) < 0) {
        Py_XDECREF(puts);
        Py_DECREF(b);
        Py_DECREF(px);
        if (!PyErr_Occurred()) {
            PyErr_SetString(PyExc_SystemError, "RemoteChan fast send: px.puts is not a list");
        }
        return NULL;
    }
    Py_DECREF(puts);
    Py_DECREF(b);
    Py_DECREF(px);
    Py_RETURN_NONE;
slow:
    return rc_send_slow(op, v);
}

/* A value from px.cache, decoded; NULL without an exception to go slow. */
static PyObject *
rc_take(ChanObject *self)
{
    PyObject *px = rc_px(self);
    PyObject *cache, *b, *v;
    Py_ssize_t n;
    long long cap, consumed, reported;
    if (px == NULL) {
        return NULL;
    }
    cache = px_get(px, o_cache);
    if (cache == NULL) {
        return NULL;
    }
    n = PyObject_Length(cache);
    if (n <= 0 || px_ll(px, o_cap, &cap) < 0) {
        Py_DECREF(cache);
        return NULL;
    }
    if (cap) {
        /* _recv asks for more once what is cached or asked is down to half
         * the prefetch window: leave that value to it */
        long long spec, prefetch;
        int drained = px_bool(px, o_drained);
        if (drained < 0 || px_ll(px, o_spec_asked, &spec) < 0
                || px_ll(px, o_prefetch, &prefetch) < 0
                || (spec + (n - 1) <= prefetch / 2 && !drained)) {
            Py_DECREF(cache);
            return NULL;
        }
    }
    if (px_ll(px, o_consumed, &consumed) < 0 || px_ll(px, o_reported, &reported) < 0) {
        Py_DECREF(cache);
        return NULL;
    }
    b = PyObject_CallOneArg(deque_popleft, cache);
    Py_DECREF(cache);
    /* px is in `dirty` whenever consumed > reported (as for puts above) */
    if (b == NULL || px_set_ll(px, o_consumed, consumed + 1) < 0
            || (consumed == reported && PySet_Add(rc_dirty, px) < 0)) {
        Py_XDECREF(b);
        return NULL;              /* an exception: the value is lost only if popleft failed */
    }
    v = wire_decode_impl(b);
    Py_DECREF(b);
    return v;                     /* an unpickling error propagates, as in _recv */
}

/* A cached value (decoded), else the Python method `slow` of op. Exceptions
 * from decoding are the user's; a proxy field that cannot be read (never on a
 * healthy proxy) leaves the decision to Python. */
static PyObject *
rc_take_or(PyObject *op, PyObject *slow)
{
    int had = PyErr_Occurred() != NULL;
    PyObject *v = rc_take((ChanObject *)op);
    if (v != NULL) {
        return v;
    }
    if (!had && PyErr_Occurred()) {
        if (!PyErr_ExceptionMatches(PyExc_AttributeError)
                && !PyErr_ExceptionMatches(PyExc_OverflowError)) {
            return NULL;
        }
        PyErr_Clear();
    }
    return PyObject_CallMethodNoArgs(op, slow);
}

static PyObject *
chan_rc_recv(PyObject *op, PyObject *Py_UNUSED(ignored))
{
    return rc_take_or(op, s_rrecv_slow);
}

/* RemoteChan's iteration (chan_iternext calls it for rc_type) */
static PyObject *
rc_next_op(PyObject *op)
{
    return rc_take_or(op, s_rnext_slow);
}

PyDoc_STRVAR(set_remote_type_doc,
"set_remote_type(cls, /)\n--\n\n"
"Iterating an instance of cls (RemoteChan, without a __next__ of its own)\n"
"takes the promoted-channel receive path (a cached value in C, else\n"
"_rnext_slow).");

static PyObject *
sp_set_remote_type(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("set_remote_type", 1);
    if (!PyType_Check(args[0])) {
        PyErr_SetString(PyExc_TypeError, "set_remote_type: a class is required");
        return NULL;
    }
    Py_XSETREF(rc_type, (PyTypeObject *)Py_NewRef(args[0]));
    Py_RETURN_NONE;
}

static PyMethodDef chan_methods[] = {
    {"send", (PyCFunction)chan_send, METH_O,
     "send(v): buffered fast path in C, else _send_slow."},
    {"recv", (PyCFunction)chan_recv, METH_NOARGS,
     "recv(): buffered fast path in C, else _recv_slow."},
    {"recv_ok", (PyCFunction)chan_recv_ok, METH_NOARGS,
     "recv_ok(): buffered fast path in C, else _recv_slow."},
    {"_rc_send", (PyCFunction)chan_rc_send, METH_O,
     "RemoteChan.send: a credited send in C, else _rsend_slow."},
    {"_rc_recv", (PyCFunction)chan_rc_recv, METH_NOARGS,
     "RemoteChan.recv: a cached value in C, else _rrecv_slow."},
    {NULL, NULL, 0, NULL},
};

static PyMemberDef chan_members[] = {
    {"_buf", T_OBJECT_EX, offsetof(ChanObject, buf), 0, NULL},
    {"_recvq", T_OBJECT_EX, offsetof(ChanObject, recvq), 0, NULL},
    {"_sendq", T_OBJECT_EX, offsetof(ChanObject, sendq), 0, NULL},
    {"_r", T_OBJECT, offsetof(ChanObject, r), 0, NULL},
    {"_cap", T_PYSSIZET, offsetof(ChanObject, cap), 0, NULL},
    {"_id", T_LONGLONG, offsetof(ChanObject, id), 0, NULL},
    {"_stale", T_INT, offsetof(ChanObject, stale), 0, NULL},
    {"_closed", T_BOOL, offsetof(ChanObject, closed), 0, NULL},
    {NULL, 0, 0, 0, NULL},
};

static PyTypeObject ChanBase_Type = {
    PyVarObject_HEAD_INIT(NULL, 0)
    .tp_name = "mpgo._speedups.ChanBase",
    .tp_basicsize = sizeof(ChanObject),
    .tp_flags = Py_TPFLAGS_DEFAULT | Py_TPFLAGS_BASETYPE | Py_TPFLAGS_HAVE_GC,
    .tp_doc = "Fields and buffered fast paths of mpgo.Chan (see mpgo/_core/_chan.py).",
    .tp_traverse = (traverseproc)chan_traverse,
    .tp_clear = (inquiry)chan_clear,
    .tp_dealloc = (destructor)chan_dealloc,
    .tp_methods = chan_methods,
    .tp_members = chan_members,
    .tp_iter = chan_iter,
    .tp_iternext = chan_iternext,
    .tp_new = PyType_GenericNew,
};

static int
chan_module_init(PyObject *m)
{
    PyObject *collections = PyImport_ImportModule("collections");
    PyObject *deque;
    if (collections == NULL) {
        return -1;
    }
    deque = PyObject_GetAttrString(collections, "deque");
    Py_DECREF(collections);
    if (deque == NULL) {
        return -1;
    }
    deque_append = PyObject_GetAttrString(deque, "append");
    deque_popleft = PyObject_GetAttrString(deque, "popleft");
    Py_DECREF(deque);
    str_send_slow = PyUnicode_InternFromString("_send_slow");
    str_recv_slow = PyUnicode_InternFromString("_recv_slow");
    str_ok = PyUnicode_InternFromString("ok");
    str_value = PyUnicode_InternFromString("value");
    str_status = PyUnicode_InternFromString("status");
    int_runnable = PyLong_FromLong(1);       /* _sched.RUNNABLE */
#define INTERN(var, text) if ((var = PyUnicode_InternFromString(text)) == NULL) return -1
    INTERN(s_last_turn, "_last_turn"); INTERN(s_turn_age, "TURN_AGE");
    INTERN(s_cur, "_cur"); INTERN(s_tick, "_tick"); INTERN(s_want_hub, "_want_hub");
    INTERN(s_new_turn, "_new_turn"); INTERN(s_runnext, "_runnext"); INTERN(s_spawnq, "_spawnq");
    INTERN(s_killing, "_killing"); INTERN(s_running_mv, "_running_mv");
    INTERN(s_running_at, "_running_at"); INTERN(str_gr, "gr"); INTERN(str_reason, "reason");
    INTERN(str_since, "since"); INTERN(str_waitq, "waitq"); INTERN(str_err, "err");
    INTERN(str_id, "id"); INTERN(str_switch, "switch"); INTERN(str_send, "send");
    INTERN(str_chan_send, "chan send"); INTERN(str_chan_receive, "chan receive");
    INTERN(s_rsend_slow, "_rsend_slow"); INTERN(s_rrecv_slow, "_rrecv_slow");
    INTERN(s_rnext_slow, "_rnext_slow");
#undef INTERN
    if (deque_append == NULL || deque_popleft == NULL || str_send_slow == NULL
            || str_recv_slow == NULL || str_ok == NULL || str_value == NULL
            || str_status == NULL || int_runnable == NULL) {
        return -1;
    }
    if (PyType_Ready(&ChanBase_Type) < 0) {
        return -1;
    }
    return PyModule_AddObjectRef(m, "ChanBase", (PyObject *)&ChanBase_Type);
}

/* ======================================================================
 * 5. Messages in C: libzmq calls on pyzmq's sockets, and the frame codec
 *
 * A hop between workers (W5) is a few µs of work in libzmq and much more
 * in the Python layers around it: pyzmq's send/recv/getsockopt (an enum
 * built per getsockopt, the GIL released and taken back around each call)
 * and msgpack's unpackb/Packer. Here the same libzmq functions are called
 * on the same sockets (pyzmq's `Socket.underlying`, the address of the
 * libzmq socket, documented for exactly this use), with the GIL held: a
 * non-blocking call on a PUSH with no high-water mark or a PULL never
 * waits. The functions are found with dlsym in the very libzmq that pyzmq
 * loaded (zmq_bind is given the path of pyzmq's extension module, opened
 * RTLD_NOLOAD: nothing new is loaded). When that fails, mpgo uses pyzmq.
 *
 * wire_pack / wire_split write and read one message, token + msgpack of
 * [src, run, frame...], byte for byte as msgpack's Packer(use_bin_type=True)
 * writes it. What the codec here does not handle (a type other than int,
 * float, bool, None, str, bytes, list, tuple, dict; an int beyond 64 bits;
 * an ext type; a malformed message) goes to the Python functions set with
 * set_split, which hold the whole format and its errors.
 * ====================================================================== */

typedef struct { unsigned char _[64]; } __attribute__((aligned(sizeof(void *)))) zmsg_t;

static int (*z_msg_init)(zmsg_t *) = NULL;
static int (*z_msg_recv)(zmsg_t *, void *, int) = NULL;
static void *(*z_msg_data)(zmsg_t *) = NULL;
static size_t (*z_msg_size)(const zmsg_t *) = NULL;
static int (*z_msg_close)(zmsg_t *) = NULL;
static int (*z_send)(void *, const void *, size_t, int) = NULL;
static int (*z_getsockopt)(void *, int, void *, size_t *) = NULL;
static int (*z_errno)(void) = NULL;
static int z_bound = 0;

#define Z_DONTWAIT 1            /* ZMQ_DONTWAIT */
#define Z_EVENTS 15             /* ZMQ_EVENTS */

PyDoc_STRVAR(zmq_bind_doc,
"zmq_bind(path, /) -> bool\n--\n\n"
"Find the libzmq functions through the already loaded module at path\n"
"(pyzmq's backend extension). True when zsend/zrecv/zevents may be used.");

static PyObject *
sp_zmq_bind(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const char *path;
    void *h;
    CHECK_NARGS("zmq_bind", 1);
    path = PyUnicode_AsUTF8(args[0]);
    if (path == NULL) {
        return NULL;
    }
    h = dlopen(path, RTLD_LAZY | RTLD_NOLOAD);
    if (h == NULL) {
        Py_RETURN_FALSE;
    }
    /* dlsym on a handle searches that object and what it was linked with */
    *(void **)&z_msg_init = dlsym(h, "zmq_msg_init");
    *(void **)&z_msg_recv = dlsym(h, "zmq_msg_recv");
    *(void **)&z_msg_data = dlsym(h, "zmq_msg_data");
    *(void **)&z_msg_size = dlsym(h, "zmq_msg_size");
    *(void **)&z_msg_close = dlsym(h, "zmq_msg_close");
    *(void **)&z_send = dlsym(h, "zmq_send");
    *(void **)&z_getsockopt = dlsym(h, "zmq_getsockopt");
    *(void **)&z_errno = dlsym(h, "zmq_errno");
    z_bound = z_msg_init && z_msg_recv && z_msg_data && z_msg_size && z_msg_close
              && z_send && z_getsockopt && z_errno;
    /* the handle stays open: pyzmq holds the library for the process's life */
    return PyBool_FromLong(z_bound);
}

static void *
z_handle(PyObject *h)
{
    void *s;
    if (!z_bound) {
        PyErr_SetString(PyExc_RuntimeError, "mpgo._speedups: zmq_bind did not succeed");
        return NULL;
    }
    s = PyLong_AsVoidPtr(h);
    if (s == NULL && !PyErr_Occurred()) {
        PyErr_SetString(PyExc_ValueError, "mpgo._speedups: a closed socket (handle 0)");
    }
    return s;
}

PyDoc_STRVAR(zsend_doc,
"zsend(handle, data, /) -> int\n--\n\n"
"zmq_send(handle, data, DONTWAIT): 0, or the errno of the failure.\n"
"handle is a live socket's `underlying`; data bytes.");

static PyObject *
sp_zsend(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    void *s;
    CHECK_NARGS("zsend", 2);
    if (!PyBytes_CheckExact(args[1])) {
        PyErr_SetString(PyExc_TypeError, "zsend: data must be bytes");
        return NULL;
    }
    s = z_handle(args[0]);
    if (s == NULL) {
        return NULL;
    }
    if (z_send(s, PyBytes_AS_STRING(args[1]), (size_t)PyBytes_GET_SIZE(args[1]),
               Z_DONTWAIT) < 0) {
        return PyLong_FromLong(z_errno());
    }
    return PyLong_FromLong(0);
}

PyDoc_STRVAR(zrecv_doc,
"zrecv(handle, /) -> bytes | None | int\n--\n\n"
"zmq_msg_recv(handle, DONTWAIT): the message, None when none is waiting,\n"
"or the errno of another failure.");

static PyObject *
sp_zrecv(PyObject *Py_UNUSED(module), PyObject *h)
{
    zmsg_t msg;
    PyObject *out;
    void *s = z_handle(h);
    if (s == NULL) {
        return NULL;
    }
    z_msg_init(&msg);
    if (z_msg_recv(&msg, s, Z_DONTWAIT) < 0) {
        int e = z_errno();
        z_msg_close(&msg);
        if (e == EAGAIN) {
            Py_RETURN_NONE;
        }
        return PyLong_FromLong(e);
    }
    out = PyBytes_FromStringAndSize((const char *)z_msg_data(&msg),
                                    (Py_ssize_t)z_msg_size(&msg));
    z_msg_close(&msg);
    return out;
}

PyDoc_STRVAR(zevents_doc,
"zevents(handle, /) -> int\n--\n\n"
"getsockopt(ZMQ_EVENTS): the POLLIN/POLLOUT bits, or -errno on failure.");

static PyObject *
sp_zevents(PyObject *Py_UNUSED(module), PyObject *h)
{
    int ev = 0;
    size_t sz = sizeof ev;
    void *s = z_handle(h);
    if (s == NULL) {
        return NULL;
    }
    if (z_getsockopt(s, Z_EVENTS, &ev, &sz) < 0) {
        return PyLong_FromLong(-z_errno());
    }
    return PyLong_FromLong(ev);
}

/* -- the frame codec ---------------------------------------------------- */

static PyObject *split_py = NULL;     /* _wire._split_py */
static PyObject *pack_py = NULL;      /* _wire._pack_message_py */

#define WIRE_DEPTH 32                 /* deeper nesting goes to Python */

typedef struct {
    unsigned char *p;
    Py_ssize_t len, cap;
} wbuf;

static int
wb_reserve(wbuf *b, Py_ssize_t n)
{
    if (b->len + n > b->cap) {
        Py_ssize_t cap = b->cap * 2;
        unsigned char *p;
        if (cap < b->len + n) {
            cap = b->len + n;
        }
        p = PyMem_Realloc(b->p, (size_t)cap);
        if (p == NULL) {
            PyErr_NoMemory();
            return -1;
        }
        b->p = p;
        b->cap = cap;
    }
    return 0;
}

/* a type byte and an n-byte big-endian length or value */
static int
wb_head(wbuf *b, unsigned char t, uint64_t v, int n)
{
    if (wb_reserve(b, 1 + n) < 0) {
        return -1;
    }
    b->p[b->len] = t;
    put_be(b->p + b->len + 1, v, n);
    b->len += 1 + n;
    return 0;
}

/* a length header: the fix form when fix != 0 and n <= fixmax, else the
 * narrowest of t8 (0: none), t16, t32; 1 when n does not fit in 32 bits */
static int
wb_len_head(wbuf *b, uint64_t n, unsigned char fix, uint64_t fixmax,
            unsigned char t8, unsigned char t16, unsigned char t32)
{
    if (fix && n <= fixmax) {
        return wb_head(b, (unsigned char)(fix | n), 0, 0);
    }
    if (t8 && n < 256) {
        return wb_head(b, t8, n, 1);
    }
    if (n < 65536) {
        return wb_head(b, t16, n, 2);
    }
    if (n > 0xffffffffULL) {
        return 1;
    }
    return wb_head(b, t32, n, 4);
}

/* 0 written, 1 not a case handled here (b is left to be discarded), -1 error */
static int
wire_pack_obj(wbuf *b, PyObject *v, int depth)
{
    PyTypeObject *t = Py_TYPE(v);
    unsigned char hdr[9];
    int hn;
    const char *data;
    Py_ssize_t n;
    if (depth > WIRE_DEPTH) {
        return 1;
    }
    if (scalar_head(v, hdr, &hn, &data, &n) == 0) {
        if (wb_reserve(b, hn + n) < 0) {
            return -1;
        }
        memcpy(b->p + b->len, hdr, hn);
        if (n) {
            memcpy(b->p + b->len + hn, data, (size_t)n);
        }
        b->len += hn + n;
        return 0;
    }
    if (t == &PyList_Type || t == &PyTuple_Type) {
        Py_ssize_t len = PySequence_Fast_GET_SIZE(v);
        int r = wb_len_head(b, (uint64_t)len, 0x90, 15, 0, 0xdc, 0xdd);
        if (r != 0) {
            return r;
        }
        for (Py_ssize_t i = 0; i < len; i++) {
            /* a list may change under a callback: none runs here (exact types only) */
            r = wire_pack_obj(b, PySequence_Fast_GET_ITEM(v, i), depth + 1);
            if (r != 0) {
                return r;
            }
        }
        return 0;
    }
    if (t == &PyDict_Type) {
        Py_ssize_t pos = 0;
        PyObject *k, *x;
        int r = wb_len_head(b, (uint64_t)PyDict_GET_SIZE(v), 0x80, 15, 0, 0xde, 0xdf);
        if (r != 0) {
            return r;
        }
        while (PyDict_Next(v, &pos, &k, &x)) {
            r = wire_pack_obj(b, k, depth + 1);
            if (r == 0) {
                r = wire_pack_obj(b, x, depth + 1);
            }
            if (r != 0) {
                return r;
            }
        }
        return 0;
    }
    return 1;
}

PyDoc_STRVAR(wire_pack_doc,
"wire_pack(token, src, run, frames, packer, /) -> bytes\n--\n\n"
"_wire.pack_message: token + msgpack of [src, run, *frames]; what the C\n"
"codec does not handle goes to set_split's pack function (with packer).");

static PyObject *
sp_wire_pack(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    wbuf b;
    PyObject *token, *frames, *out = NULL;
    Py_ssize_t nf, tn;
    int r;
    CHECK_NARGS("wire_pack", 5);
    token = args[0];
    frames = args[3];
    if (!PyBytes_CheckExact(token) || !PyList_CheckExact(frames)
            || Py_TYPE(args[1]) != &PyLong_Type || Py_TYPE(args[2]) != &PyLong_Type) {
        goto python;
    }
    tn = PyBytes_GET_SIZE(token);
    nf = PyList_GET_SIZE(frames);
    b.cap = 256;
    b.len = 0;
    b.p = PyMem_Malloc((size_t)b.cap);
    if (b.p == NULL) {
        return PyErr_NoMemory();
    }
    r = wb_reserve(&b, tn);
    if (r == 0) {
        memcpy(b.p, PyBytes_AS_STRING(token), (size_t)tn);
        b.len = tn;
        r = wb_len_head(&b, (uint64_t)(nf + 2), 0x90, 15, 0, 0xdc, 0xdd);
    }
    if (r == 0) {
        r = wire_pack_obj(&b, args[1], 0);
    }
    if (r == 0) {
        r = wire_pack_obj(&b, args[2], 0);
    }
    for (Py_ssize_t i = 0; r == 0 && i < nf; i++) {
        r = wire_pack_obj(&b, PyList_GET_ITEM(frames, i), 1);
    }
    if (r == 0) {
        out = PyBytes_FromStringAndSize((const char *)b.p, b.len);
    }
    PyMem_Free(b.p);
    if (r <= 0) {
        return out;             /* the message, or NULL with the error set */
    }
python:
    if (pack_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mpgo._speedups: set_split was not called");
        return NULL;
    }
    return PyObject_Vectorcall(pack_py, args, 5, NULL);
}

/* One msgpack item from *pp (< end): a new reference, or NULL. NULL with an
 * exception set only on memory errors; without one when the item is not a
 * case handled here (the caller hands the message to Python). */
static PyObject *
wire_unpack_obj(const unsigned char **pp, const unsigned char *end, int depth)
{
    const unsigned char *p = *pp;
    unsigned char c;
    Py_ssize_t n;
    int kind;                   /* 0 str, 1 bin, 2 array, 3 map */
    PyObject *out;
    if (p >= end || depth > WIRE_DEPTH) {
        return NULL;
    }
    c = *p++;
    if (c < 0x80) {
        *pp = p;
        return PyLong_FromLong(c);
    }
    if (c >= 0xe0) {
        *pp = p;
        return PyLong_FromLong((long)(signed char)c);
    }
    if (c >= 0xa0 && c < 0xc0) { kind = 0; n = c & 0x1f; goto sized; }
    if (c >= 0x90 && c < 0xa0) { kind = 2; n = c & 0x0f; goto sized; }
    if (c >= 0x80 && c < 0x90) { kind = 3; n = c & 0x0f; goto sized; }
    switch (c) {
    case 0xc0: *pp = p; return Py_NewRef(Py_None);
    case 0xc2: *pp = p; return Py_NewRef(Py_False);
    case 0xc3: *pp = p; return Py_NewRef(Py_True);
    case 0xcc: case 0xcd: case 0xce: case 0xcf: {
        int w = 1 << (c - 0xcc);
        if (end - p < w) {
            return NULL;
        }
        *pp = p + w;
        return PyLong_FromUnsignedLongLong(get_be(p, w));
    }
    case 0xd0: case 0xd1: case 0xd2: case 0xd3: {
        int w = 1 << (c - 0xd0);
        uint64_t u;
        long long x;
        if (end - p < w) {
            return NULL;
        }
        u = get_be(p, w);
        if (w < 8 && (u >> (8 * w - 1)) & 1) {
            u |= ~(uint64_t)0 << (8 * w);        /* sign-extend */
        }
        memcpy(&x, &u, sizeof x);
        *pp = p + w;
        return PyLong_FromLongLong(x);
    }
    case 0xca: {
        union { float f; uint32_t u; } cv;
        if (end - p < 4) {
            return NULL;
        }
        cv.u = (uint32_t)get_be(p, 4);
        *pp = p + 4;
        return PyFloat_FromDouble((double)cv.f);
    }
    case 0xcb: {
        union { double d; uint64_t u; } cv;
        if (end - p < 8) {
            return NULL;
        }
        cv.u = get_be(p, 8);
        *pp = p + 8;
        return PyFloat_FromDouble(cv.d);
    }
    case 0xd9: case 0xda: case 0xdb:
    case 0xc4: case 0xc5: case 0xc6:
    case 0xdc: case 0xdd: case 0xde: case 0xdf: {
        int w;
        if (c >= 0xdc) {
            kind = c < 0xde ? 2 : 3;
            w = (c == 0xdc || c == 0xde) ? 2 : 4;
        } else if (c >= 0xd9) {
            kind = 0;
            w = 1 << (c - 0xd9);
        } else {
            kind = 1;
            w = 1 << (c - 0xc4);
        }
        if (end - p < w) {
            return NULL;
        }
        n = (Py_ssize_t)get_be(p, w);
        p += w;
        goto sized;
    }
    default:
        return NULL;            /* ext types, reserved bytes: Python's business */
    }
sized:
    if (kind <= 1) {
        if (end - p < n) {
            return NULL;
        }
        if (kind == 1) {
            out = PyBytes_FromStringAndSize((const char *)p, n);
        } else {
            out = PyUnicode_DecodeUTF8((const char *)p, n, NULL);
            if (out == NULL && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
                PyErr_Clear();
            }
        }
        if (out != NULL) {
            *pp = p + n;
        }
        return out;
    }
    if (n > end - p) {          /* every item takes a byte at least */
        return NULL;
    }
    if (kind == 2) {
        out = PyList_New(n);
        if (out == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *x = wire_unpack_obj(&p, end, depth + 1);
            if (x == NULL) {
                Py_DECREF(out);
                return NULL;
            }
            PyList_SET_ITEM(out, i, x);
        }
    } else {
        out = PyDict_New();
        if (out == NULL) {
            return NULL;
        }
        for (Py_ssize_t i = 0; i < n; i++) {
            PyObject *k = wire_unpack_obj(&p, end, depth + 1), *x = NULL;
            int r = -1;
            if (k != NULL) {
                x = wire_unpack_obj(&p, end, depth + 1);
            }
            if (x != NULL) {
                r = PyDict_SetItem(out, k, x);
                if (r < 0 && !PyErr_ExceptionMatches(PyExc_MemoryError)) {
                    PyErr_Clear();  /* an unhashable key: Python decides */
                }
            }
            Py_XDECREF(k);
            Py_XDECREF(x);
            if (r < 0) {
                Py_DECREF(out);
                return NULL;
            }
        }
    }
    *pp = p;
    return out;
}

PyDoc_STRVAR(wire_split_doc,
"wire_split(token, msg, /) -> list | None\n--\n\n"
"_wire.split: [src, run, frame...] of a message of this run, None for a\n"
"foreign one (the token is compared in constant time first); what the C\n"
"codec does not handle goes to set_split's split function.");

static PyObject *
sp_wire_split(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    const unsigned char *p, *end, *tok;
    Py_ssize_t tn, n;
    unsigned char diff = 0;
    PyObject *out;
    CHECK_NARGS("wire_split", 2);
    if (!PyBytes_CheckExact(args[0]) || !PyBytes_CheckExact(args[1])) {
        goto python;
    }
    tok = (const unsigned char *)PyBytes_AS_STRING(args[0]);
    tn = PyBytes_GET_SIZE(args[0]);
    p = (const unsigned char *)PyBytes_AS_STRING(args[1]);
    n = PyBytes_GET_SIZE(args[1]);
    if (n <= tn) {
        Py_RETURN_NONE;
    }
    for (Py_ssize_t i = 0; i < tn; i++) {
        diff |= (unsigned char)(p[i] ^ tok[i]);     /* no early exit: constant time */
    }
    if (diff) {
        Py_RETURN_NONE;
    }
    end = p + n;
    p += tn;
    out = wire_unpack_obj(&p, end, 0);
    if (out == NULL) {
        if (PyErr_Occurred()) {
            return NULL;
        }
        goto python;
    }
    if (p != end || !PyList_CheckExact(out) || PyList_GET_SIZE(out) < 2) {
        Py_DECREF(out);
        goto python;            /* trailing bytes, not a message: as Python says */
    }
    return out;
python:
    if (split_py == NULL) {
        PyErr_SetString(PyExc_RuntimeError, "mpgo._speedups: set_split was not called");
        return NULL;
    }
    return PyObject_Vectorcall(split_py, args, 2, NULL);
}

PyDoc_STRVAR(set_split_doc,
"set_split(split, pack, /)\n--\n\n"
"The Python functions for what wire_split/wire_pack do not handle in C.");

static PyObject *
sp_set_split(PyObject *Py_UNUSED(module), PyObject *const *args, Py_ssize_t nargs)
{
    CHECK_NARGS("set_split", 2);
    Py_XSETREF(split_py, Py_NewRef(args[0]));
    Py_XSETREF(pack_py, Py_NewRef(args[1]));
    Py_RETURN_NONE;
}


/* ======================================================================
 * 6. Module definition
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
    /* 3. sync fast paths */
    FASTCALL("set_hub", sp_set_hub, set_hub_doc),
    /* 4. channel fast path */
    FASTCALL("set_thread", sp_set_thread, set_thread_doc),
    FASTCALL("set_preempt", sp_set_preempt, set_preempt_doc),
    FASTCALL("set_sched", sp_set_sched, set_sched_doc),
    {"c_park_count", (PyCFunction)sp_c_park_count, METH_NOARGS, c_park_count_doc},
    FASTCALL("set_remote", sp_set_remote, set_remote_doc),
    FASTCALL("set_remote_type", sp_set_remote_type, set_remote_type_doc),
    FASTCALL("set_wire", sp_set_wire, set_wire_doc),
    {"wire_encode", (PyCFunction)sp_wire_encode, METH_O, wire_encode_doc},
    {"wire_decode", (PyCFunction)sp_wire_decode, METH_O, wire_decode_doc},
    /* 5. messages */
    FASTCALL("zmq_bind", sp_zmq_bind, zmq_bind_doc),
    FASTCALL("zsend", sp_zsend, zsend_doc),
    {"zrecv", (PyCFunction)sp_zrecv, METH_O, zrecv_doc},
    {"zevents", (PyCFunction)sp_zevents, METH_O, zevents_doc},
    FASTCALL("wire_pack", sp_wire_pack, wire_pack_doc),
    FASTCALL("wire_split", sp_wire_split, wire_split_doc),
    FASTCALL("set_split", sp_set_split, set_split_doc),
    /* pair rings */
    FASTCALL("ring_put", sp_ring_put, ring_put_doc),
    FASTCALL("ring_take", sp_ring_take, ring_take_doc),
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
    if (PyModule_AddStringConstant(m, "IMPLEMENTATION", "c") < 0
            || PyModule_AddIntConstant(m, "RING_BYTES", RING_HEAD + RING_DATA) < 0
            || PyModule_AddIntConstant(m, "RING_BIG", RING_DATA / 4) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyType_Ready(&MutexBase_Type) < 0 || PyType_Ready(&AtomicBase_Type) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    if (PyModule_AddObjectRef(m, "MutexBase", (PyObject *)&MutexBase_Type) < 0
            || PyModule_AddObjectRef(m, "AtomicBase", (PyObject *)&AtomicBase_Type) < 0
            || chan_module_init(m) < 0) {
        Py_DECREF(m);
        return NULL;
    }
    return m;
}

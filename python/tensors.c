// NumPy arrays <-> kiln's tensors (StTensor, StFile: runtime/safetensors.h): dicts of arrays
// bound as inputs or weights without copying those that already fit, outputs and files as
// new arrays, and kiln.load_safetensors / kiln.save_safetensors.
#include "python/pykiln.h"

#include <stdlib.h>
#include <string.h>

// The kiln dtype of an array's NumPy dtype, or DT_COUNT when it has none; *widen: an
// integer dtype kiln has no type for, bound as int64.
static DType dtype_of(PyArray_Descr *t, bool *widen) {
  *widen = false;
  switch (t->kind) {
  case 'f': return t->elsize == 4 ? DT_F32 : t->elsize == 8 ? DT_F64 : t->elsize == 2 ? DT_F16 : DT_COUNT;
  case 'i': return t->elsize == 4 ? DT_I32 : t->elsize == 8 ? DT_I64 : (*widen = true, DT_I64);
  case 'u': return t->elsize == 1 ? DT_U8 : (*widen = true, DT_I64);
  case 'b': return DT_BOOL;
  default: return DT_COUNT;
  }
}

static int npy_of(DType t) {
  switch (t) {
  case DT_F32: return NPY_FLOAT32;
  case DT_F64: return NPY_FLOAT64;
  case DT_F16: return NPY_FLOAT16;
  case DT_BF16: return NPY_FLOAT32;  // NumPy has no bfloat16: widened, exactly
  case DT_I32: return NPY_INT32;
  case DT_I64: return NPY_INT64;
  case DT_U8: return NPY_UINT8;
  case DT_BOOL: return NPY_BOOL;
  default: return -1;
  }
}

// One value of the dict as an array kiln can read in place (a new reference), or NULL.
static PyArrayObject *fitting_array(PyObject *value, const char *what, const char *name, DType *dt) {
  PyArrayObject *a = (PyArrayObject *)PyArray_FROM_O(value);
  if (!a) return NULL;
  bool widen;
  *dt = dtype_of(PyArray_DESCR(a), &widen);
  if (*dt == DT_COUNT) {
    PyObject *s = PyObject_Str((PyObject *)PyArray_DESCR(a));
    PyErr_Format(py_kiln_error, "%s: tensor \"%s\": NumPy dtype %S is not supported (float16/32/64, integers, bool)",
                 what, name, s ? s : Py_None);
    Py_XDECREF(s);
    Py_DECREF(a);
    return NULL;
  }
  if (PyArray_NDIM(a) > ST_MAX_RANK) {
    PyErr_Format(py_kiln_error, "%s: tensor \"%s\": rank %d is more than %d", what, name, PyArray_NDIM(a), ST_MAX_RANK);
    Py_DECREF(a);
    return NULL;
  }
  int type = npy_of(*dt);
  // The same array when it is C-contiguous, aligned, native-endian and of type `type`.
  PyArrayObject *c = (PyArrayObject *)PyArray_FROM_OTF((PyObject *)a, type,
                                                        NPY_ARRAY_IN_ARRAY | (widen ? NPY_ARRAY_FORCECAST : 0));
  if (c && widen && PyArray_DESCR(a)->kind == 'u' && PyArray_DESCR(a)->elsize == 8) {
    const int64_t *v = PyArray_DATA(c);  // uint64 above INT64_MAX wrapped to negative
    for (npy_intp i = 0, n = PyArray_SIZE(c); i < n; i++)
      if (v[i] < 0) {
        PyErr_Format(py_kiln_error, "%s: tensor \"%s\": value %llu (element %zd) does not fit in int64", what, name,
                     (unsigned long long)v[i], (Py_ssize_t)i);
        Py_DECREF(c);
        c = NULL;
        break;
      }
  }
  Py_DECREF(a);
  return c;
}

bool py_dict_to_file(PyObject *dict, const char *what, StFile *f, PyObject **keep) {
  *f = (StFile){0};
  *keep = NULL;
  if (!PyDict_Check(dict)) {
    PyErr_Format(PyExc_TypeError, "%s must be a dict of arrays {name: array}", what);
    return false;
  }
  Py_ssize_t n = PyDict_Size(dict);
  f->path = strdup(what);
  f->tensors = calloc((size_t)n + 1, sizeof *f->tensors);
  *keep = PyList_New(0);
  if (!f->path || !f->tensors || !*keep) {
    PyErr_NoMemory();
    goto fail;
  }
  PyObject *key, *value;
  Py_ssize_t pos = 0;
  while (PyDict_Next(dict, &pos, &key, &value)) {
    const char *name = PyUnicode_Check(key) ? PyUnicode_AsUTF8(key) : NULL;
    if (!name) {
      if (!PyErr_Occurred()) PyErr_Format(PyExc_TypeError, "%s: the names must be strings, not %R", what, key);
      goto fail;
    }
    DType dt;
    PyArrayObject *a = fitting_array(value, what, name, &dt);
    if (!a) goto fail;
    int err = PyList_Append(*keep, (PyObject *)a);
    Py_DECREF(a);
    StTensor *t = &f->tensors[f->n];
    if (err < 0 || !(t->name = strdup(name))) goto fail;
    f->n++;
    t->dtype = dt;
    t->rank = PyArray_NDIM(a);
    for (int i = 0; i < t->rank; i++) t->shape[i] = PyArray_DIM(a, i);
    t->nbytes = (size_t)PyArray_NBYTES(a);
    t->data = PyArray_DATA(a);
  }
  return true;
fail:
  st_free(f);
  Py_CLEAR(*keep);
  return false;
}

PyObject *py_tensor_to_array(const StTensor *t) {
  int type = npy_of(t->dtype);
  if (type < 0) return PyErr_Format(py_kiln_error, "tensor \"%s\": dtype %s has no NumPy type", t->name, dt_name(t->dtype));
  npy_intp dims[ST_MAX_RANK];
  for (int i = 0; i < t->rank; i++) dims[i] = (npy_intp)t->shape[i];
  PyArrayObject *a = (PyArrayObject *)PyArray_SimpleNew(t->rank, dims, type);
  if (!a) return NULL;
  if (t->dtype == DT_BF16) {
    float *out = PyArray_DATA(a);
    for (size_t i = 0, n = (size_t)st_numel(t); i < n; i++) out[i] = (float)dt_load(DT_BF16, t->data, i);
  } else if (t->nbytes) {
    memcpy(PyArray_DATA(a), t->data, t->nbytes);
  }
  return (PyObject *)a;
}

PyObject *py_file_tensor_to_array(const StFile *f, const StTensor *t) {
  if (t->data) return py_tensor_to_array(t);
  void *data = malloc(t->nbytes + 1);
  Diag d = {0};
  if (!data) return PyErr_NoMemory();
  StTensor read = *t;
  read.data = data;
  PyObject *a = st_load(f, t, data, &d) ? py_tensor_to_array(&read) : py_raise(&d);
  free(data);
  return a;
}

PyObject *py_file_to_dict(const StFile *f) {
  PyObject *d = PyDict_New();
  for (int i = 0; d && i < f->n; i++) {
    PyObject *a = py_tensor_to_array(&f->tensors[i]);
    if (!a || PyDict_SetItemString(d, f->tensors[i].name, a) < 0) Py_CLEAR(d);
    Py_XDECREF(a);
  }
  return d;
}

bool py_file_arg(PyObject *arg, const char *what, bool open_only, StFile *f) {
  *f = (StFile){0};
  Diag d = {0};
  if (!PyDict_Check(arg)) {
    PyObject *p = py_path(arg);
    if (!p) return false;
    bool ok;
    Py_BEGIN_ALLOW_THREADS
    ok = open_only ? st_open(PyBytes_AS_STRING(p), f, &d) : st_read(PyBytes_AS_STRING(p), f, &d);
    Py_END_ALLOW_THREADS
    Py_DECREF(p);
    if (!ok) py_raise(&d);
    return ok;
  }
  PyObject *keep;
  if (!py_dict_to_file(arg, what, f, &keep)) return false;
  size_t total = 0;
  for (int i = 0; i < f->n; i++) total += f->tensors[i].nbytes;
  char *p = f->buffer = malloc(total + 1);  // the copy: owned by f
  if (!p) {
    st_free(f);
    Py_DECREF(keep);
    PyErr_NoMemory();
    return false;
  }
  for (int i = 0; i < f->n; i++) {
    memcpy(p, f->tensors[i].data, f->tensors[i].nbytes);
    f->tensors[i].data = p;
    p += f->tensors[i].nbytes;
  }
  f->size = total;
  Py_DECREF(keep);
  return true;
}

PyObject *py_describe(const KilnModel *m, KilnRole role) {
  PyObject *d = PyDict_New();
  for (int i = 0, n = kiln_count(m, role); d && i < n; i++) {
    KilnTensorInfo t = kiln_info(m, role, i);
    PyObject *shape = PyTuple_New(t.rank);
    for (int k = 0; shape && k < t.rank; k++) PyTuple_SET_ITEM(shape, k, PyLong_FromLongLong(t.shape[k]));
    PyObject *v = shape ? Py_BuildValue("(Ns)", shape, dt_name(t.dtype)) : NULL;
    if (!v || PyDict_SetItemString(d, t.name, v) < 0) Py_CLEAR(d);
    Py_XDECREF(v);
  }
  return d;
}

// ---- kiln.load_safetensors, kiln.save_safetensors ------------------------------------------

PyObject *py_load_safetensors(PyObject *self, PyObject *args) {
  PyObject *path;
  if (!PyArg_ParseTuple(args, "O:load_safetensors", &path)) return NULL;
  StFile f;
  if (!py_file_arg(path, "load_safetensors", false, &f)) return NULL;
  PyObject *d = py_file_to_dict(&f);
  st_free(&f);
  return d;
}

PyObject *py_save_safetensors(PyObject *self, PyObject *args) {
  PyObject *path, *dict, *keep;
  if (!PyArg_ParseTuple(args, "OO!:save_safetensors", &path, &PyDict_Type, &dict)) return NULL;
  PyObject *p = py_path(path);
  if (!p) return NULL;
  StFile f;
  if (!py_dict_to_file(dict, "save_safetensors", &f, &keep)) {
    Py_DECREF(p);
    return NULL;
  }
  Diag d = {0};
  bool ok;
  Py_BEGIN_ALLOW_THREADS
  ok = st_write(PyBytes_AS_STRING(p), f.tensors, f.n, &d);
  Py_END_ALLOW_THREADS
  st_free(&f);
  Py_DECREF(keep);
  Py_DECREF(p);
  if (!ok) return py_raise(&d);
  Py_RETURN_NONE;
}

// The Python package kiln's C side (docs/python.md): what its files share. module.c holds
// the module, kiln.Error and the option helpers; tensors.c converts between NumPy arrays and
// tensors (StTensor, StFile); model.c, trainer.c and tokenizer.c define the three classes.
// Everything goes through the library API (api/kiln.h) and its tensor files.
#ifndef KILN_PYKILN_H
#define KILN_PYKILN_H

#define PY_SSIZE_T_CLEAN
#include <Python.h>

#define PY_ARRAY_UNIQUE_SYMBOL kiln_numpy_api
#define NPY_NO_DEPRECATED_API NPY_1_7_API_VERSION
#ifndef PYKILN_IMPORT_ARRAY
#define NO_IMPORT_ARRAY
#endif
#include <numpy/arrayobject.h>

#include "api/kiln.h"

// ---- module.c ------------------------------------------------------------------------------
extern PyObject *py_kiln_error;  // kiln.Error, a ValueError
// Raises kiln.Error with d's message; returns NULL.
PyObject *py_raise(const Diag *d);
// The options every class takes: set (dict or list of "NAME=VALUE" strings), threads,
// backend and precision ("fp32" or "bf16") into opt, sets[] and the strings they point to
// held by *keep (a new list).
bool py_options(PyObject *set, PyObject *threads, const char *backend, const char *precision, KilnOptions *opt,
                KilnSet **sets, PyObject **keep);
// A path argument (str or os.PathLike) as a new bytes object, or NULL with an exception set.
PyObject *py_path(PyObject *o);

// ---- tensors.c -------------------------------------------------------------------------------
// A dict of arrays as a tensor file named `what` (messages): C-contiguous arrays of a
// safetensors dtype are borrowed, not copied; other integer dtypes are converted to int64
// when every value fits (else kiln.Error), other layouts made contiguous. *keep holds the
// arrays while f is used (then Py_DECREF it); st_free(f) frees the rest.
bool py_dict_to_file(PyObject *dict, const char *what, StFile *f, PyObject **keep);
// A copy of t as a NumPy array (NULL with an exception set when its dtype has none).
PyObject *py_tensor_to_array(const StTensor *t);
// The same for a tensor of f, read from the file when f was opened with st_open.
PyObject *py_file_tensor_to_array(const StFile *f, const StTensor *t);
// Every tensor of f as a dict of arrays, in f's order.
PyObject *py_file_to_dict(const StFile *f);
// A file argument (weights, data): a path (read with st_read; with open_only, opened with
// st_open: each tensor is read when used, and no copy of the file is held) or a dict, named
// `what` in messages (copied, so later changes to the caller's arrays are not seen). *f owns
// everything; st_free it.
bool py_file_arg(PyObject *arg, const char *what, bool open_only, StFile *f);
// (shape tuple, dtype name) of a tensor description, and name -> that for a role.
PyObject *py_describe(const KilnModel *m, KilnRole role);

PyObject *py_load_safetensors(PyObject *self, PyObject *args);
PyObject *py_save_safetensors(PyObject *self, PyObject *args);
PyObject *py_convert_hf(PyObject *self, PyObject *args, PyObject *kw);  // convert.c

// ---- the classes -------------------------------------------------------------------------------
extern PyTypeObject py_model_type, py_trainer_type, py_tokenizer_type;

#endif

"""Reads a PyTorch checkpoint in the legacy (pre-1.6, non-zip) serialization format
without torch: a state dict of float tensors, as numpy arrays.

The format is a sequence of pickles (magic number, protocol version, system info, the
state dict whose storages are persistent ids, the list of storage keys) followed by each
storage's raw data (an int64 element count, then the elements). Only the globals such a
state dict needs are accepted (tensor rebuilding, storage types, OrderedDict); anything
else in the pickle is refused.
"""
import collections
import pickle
import struct

import numpy as np

MAGIC = 0x1950A86A20F9469CFC6C
PROTOCOL = 1001
DTYPES = {
    'FloatStorage': np.float32,
    'DoubleStorage': np.float64,
    'HalfStorage': np.float16,
    'LongStorage': np.int64,
    'IntStorage': np.int32,
    'ByteStorage': np.uint8,
}


class StorageType:
    def __init__(self, name):
        self.name = name


class Storage:
    def __init__(self, dtype, numel):
        self.dtype, self.numel, self.data = dtype, numel, None


class Tensor:
    def __init__(self, storage, offset, size, stride):
        self.storage, self.offset = storage, offset
        self.size, self.stride = tuple(size), tuple(stride)

    def array(self):
        a = self.storage.data
        strides = tuple(s * a.itemsize for s in self.stride)
        view = np.lib.stride_tricks.as_strided(a[self.offset:], shape=self.size, strides=strides)
        return view.copy()


def _rebuild_tensor_v2(storage, offset, size, stride, *_rest):
    return Tensor(storage, offset, size, stride)


class _Unpickler(pickle.Unpickler):
    def __init__(self, f, storages):
        super().__init__(f)
        self.storages = storages

    def find_class(self, module, name):
        if module == 'torch._utils' and name == '_rebuild_tensor_v2':
            return _rebuild_tensor_v2
        if module == 'torch' and name in DTYPES:
            return StorageType(name)
        if module == 'collections' and name == 'OrderedDict':
            return collections.OrderedDict
        raise pickle.UnpicklingError(f'unexpected global {module}.{name}')

    def persistent_load(self, pid):
        kind, stype, key, _location, numel = pid[:5]
        if kind != 'storage':
            raise pickle.UnpicklingError(f'unexpected persistent id {kind}')
        if key not in self.storages:
            self.storages[key] = Storage(DTYPES[stype.name], numel)
        return self.storages[key]


def load(path):
    """The state dict of the checkpoint at `path`: name -> numpy array (or plain value)."""
    with open(path, 'rb') as f:
        if pickle.load(f) != MAGIC:
            raise ValueError('not a legacy PyTorch checkpoint (magic number)')
        if pickle.load(f) != PROTOCOL:
            raise ValueError('unsupported legacy PyTorch protocol version')
        pickle.load(f)  # system info: endianness and type sizes
        storages = {}
        state = _Unpickler(f, storages).load()
        for key in pickle.load(f):
            s = storages[key]
            (n,) = struct.unpack('<q', f.read(8))
            if n != s.numel:
                raise ValueError(f'storage {key}: {n} elements, expected {s.numel}')
            s.data = np.frombuffer(f.read(n * np.dtype(s.dtype).itemsize), dtype=s.dtype)
        if f.read(1) != b'':
            raise ValueError('trailing bytes after the last storage')
    return collections.OrderedDict(
        (k, v.array() if isinstance(v, Tensor) else v) for k, v in state.items()
    )

"""A pretrained checkpoint's own tokenizer (docs/tokenizers.md), read from its directory::

    tok = attnsink.Tokenizer.load("gpt2/")   # tokenizer.json, or encoder.json + vocab.bpe
    ids = tok.encode("Hello world")          # int32 array; no BOS is added
    tok.decode(ids)                          # "Hello world"
    tok.bos, tok.adds_bos                    # BOS id (None if the files name none), whether
                                             # the tokenizer's own settings add it
"""

import ctypes
import os

import numpy as np

from ._lib import declare, lib, libc
from . import _check, _ClosedHandle, _Closable, _Handle, ArgumentError, Status

__all__ = ["Tokenizer"]

_tok_p = ctypes.c_void_p
_int32_p = ctypes.POINTER(ctypes.c_int32)


def _declare():
    st = ctypes.c_int
    protos = {
        "asink_tokenizer_load": (st, [ctypes.POINTER(_tok_p), ctypes.c_char_p]),
        "asink_tokenizer_free": (None, [_tok_p]),
        "asink_tokenizer_encode": (st, [_tok_p, ctypes.c_char_p, ctypes.c_size_t,
                                        ctypes.POINTER(_int32_p), ctypes.POINTER(ctypes.c_size_t)]),
        "asink_tokenizer_decode": (st, [_tok_p, _int32_p, ctypes.c_size_t,
                                        ctypes.POINTER(ctypes.c_void_p),
                                        ctypes.POINTER(ctypes.c_size_t)]),
        "asink_tokenizer_vocab_size": (ctypes.c_int, [_tok_p]),
        "asink_tokenizer_kind": (ctypes.c_char_p, [_tok_p]),
        "asink_tokenizer_bos": (ctypes.c_int32, [_tok_p, ctypes.POINTER(ctypes.c_int)]),
        "asink_tokenizer_token_id": (ctypes.c_int32, [_tok_p, ctypes.c_char_p]),
        "asink_tokenizer_token": (ctypes.c_char_p, [_tok_p, ctypes.c_int32]),
    }
    declare(protos)


_declare()


class Tokenizer(_Closable):
    """Owns one asink_tokenizer: BPE as GPT-2, Pythia, LLaMA 3 and Qwen2 (byte level) or
    LLaMA 2 and Mistral (SentencePiece style) use it. Create it with :meth:`load`.

    Errors: a directory without tokenizer files or an unreadable file raises FileError; a
    malformed one FormatError naming the file and key; a part of tokenizer.json the library
    does not implement (a model other than BPE, an unknown normaliser, pre-tokenizer, decoder
    or Split regex) LibraryError naming it."""

    def __init__(self):
        raise TypeError("use Tokenizer.load(directory)")

    @classmethod
    def load(cls, path):
        """The tokenizer of checkpoint directory ``path`` (str or os.PathLike)."""
        self = object.__new__(cls)
        self._h = _Handle(free=lib.asink_tokenizer_free)
        _check(lib.asink_tokenizer_load(ctypes.byref(self._h.ptr), os.fsencode(path)),
               "asink_tokenizer_load")
        return self

    def _close(self):
        h, self._h = self._h, _ClosedHandle("tokenizer")
        h.close()

    def encode(self, text):
        """The ids of ``text`` (str, or bytes: any bytes, valid UTF-8 or not) as an int32
        array, without BOS. Added tokens ("<|endoftext|>", "<s>") in the text encode as
        themselves when the files are a tokenizer.json."""
        if isinstance(text, str):
            try:
                data = text.encode("utf-8")
            except UnicodeEncodeError as e:
                raise ArgumentError("text holds a lone surrogate at %d: not encodable as UTF-8"
                                    % e.start, Status.ERR_ARG) from None
        elif isinstance(text, (bytes, bytearray, memoryview)):
            data = bytes(text)
        else:
            raise TypeError("text must be str or bytes, not %s" % type(text).__name__)
        ptr = _int32_p()
        n = ctypes.c_size_t()
        _check(lib.asink_tokenizer_encode(self._h.ptr, data, len(data), ctypes.byref(ptr),
                                          ctypes.byref(n)), "asink_tokenizer_encode")
        try:
            return np.ctypeslib.as_array(ptr, shape=(n.value,)).copy() if n.value \
                else np.zeros(0, np.int32)
        finally:
            libc.free(ptr)

    def decode_bytes(self, ids):
        """The bytes of ``ids`` (a sequence or 1-D array of integers)."""
        a = np.asarray(ids)
        if a.dtype.kind not in "iu" and a.size:
            raise TypeError("ids must be integers, not %s" % a.dtype)
        if a.ndim != 1:
            raise ArgumentError("ids must be one-dimensional, not of shape %s" % (a.shape,),
                                Status.ERR_ARG)
        bad = (a < 0) | (a > 2**31 - 1) if a.size else np.zeros(0, bool)
        if bad.any():
            i = int(np.argmax(bad))
            raise ArgumentError("id %d (item %d) is not a token of this tokenizer" % (a[i], i),
                                Status.ERR_ARG)
        a = np.ascontiguousarray(a, dtype=np.int32)
        out = ctypes.c_void_p()
        n = ctypes.c_size_t()
        _check(lib.asink_tokenizer_decode(self._h.ptr, a.ctypes.data_as(_int32_p), a.size,
                                          ctypes.byref(out), ctypes.byref(n)),
               "asink_tokenizer_decode")
        try:
            return ctypes.string_at(out, n.value)
        finally:
            libc.free(out)

    def decode(self, ids):
        """The text of ``ids`` as str; bytes that are not valid UTF-8 (ids that end inside
        a character, byte tokens of invalid input) become U+FFFD, as in HF's decoders. Use
        :meth:`decode_bytes` for the exact bytes."""
        return self.decode_bytes(ids).decode("utf-8", "replace")

    @property
    def vocab_size(self):
        """Highest id + 1, added tokens included."""
        return lib.asink_tokenizer_vocab_size(self._h.ptr)

    @property
    def kind(self):
        """"byte-level" or "metaspace" (SentencePiece style)."""
        return lib.asink_tokenizer_kind(self._h.ptr).decode()

    @property
    def bos(self):
        """The BOS id the files name, or None."""
        b = lib.asink_tokenizer_bos(self._h.ptr, None)
        return None if b < 0 else b

    @property
    def adds_bos(self):
        """Whether the tokenizer's own settings start an encoding for the model with BOS."""
        adds = ctypes.c_int()
        lib.asink_tokenizer_bos(self._h.ptr, ctypes.byref(adds))
        return bool(adds.value)

    def token_id(self, token):
        """The id of ``token`` as the vocabulary spells it, or None."""
        i = lib.asink_tokenizer_token_id(self._h.ptr, token.encode("utf-8"))
        return None if i < 0 else i

    def token(self, i):
        """The vocabulary's spelling of id ``i``, or None."""
        if not 0 <= int(i) < 2**31:
            return None
        s = lib.asink_tokenizer_token(self._h.ptr, int(i))
        return None if s is None else s.decode("utf-8", "replace")

    def __repr__(self):
        if self.closed:
            return "<attnsink.Tokenizer (closed)>"
        return "<attnsink.Tokenizer %s, %d ids>" % (self.kind, self.vocab_size)

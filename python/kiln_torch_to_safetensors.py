"""A PyTorch state dict (torch.save's pickle, e.g. a Hugging Face pytorch_model.bin) to a
safetensors file, for kiln convert-hf and kiln.convert_hf (api/convert_hf.c runs it: kiln
itself never parses pickles).

  python3 kiln_torch_to_safetensors.py pytorch_model.bin OUT.safetensors

Loaded on the CPU with weights_only=True (no code in the pickle runs) where torch has it.
Exit 3 when torch cannot be imported, 1 (with a message) when the file is no state dict.
"""
import json
import struct
import sys

DTYPES = {"float32": "F32", "float16": "F16", "bfloat16": "BF16", "float64": "F64",
          "int64": "I64", "int32": "I32", "int16": "I16", "int8": "I8", "uint8": "U8", "bool": "BOOL"}


def main(src, dst):
    try:
        import torch
    except ImportError as e:
        print(f"kiln: {src}: cannot import torch ({e})", file=sys.stderr)
        return 3
    try:
        try:
            state = torch.load(src, map_location="cpu", weights_only=True)
        except TypeError:  # torch before 1.13: no weights_only
            state = torch.load(src, map_location="cpu")
    except Exception as e:  # a truncated or foreign file: torch's own words
        print(f"kiln: {src}: not a PyTorch file torch.load reads ({type(e).__name__}: {e})", file=sys.stderr)
        return 1
    if isinstance(state, dict) and isinstance(state.get("state_dict"), dict):
        state = state["state_dict"]
    if not isinstance(state, dict) or not state:
        print(f"kiln: {src}: not a state dict (a dict of tensors by name)", file=sys.stderr)
        return 1
    header, blobs, at = {}, [], 0
    for name, t in state.items():
        dtype = DTYPES.get(str(t.dtype).replace("torch.", "")) if torch.is_tensor(t) else None
        if dtype is None:
            print(f"kiln: {src}: \"{name}\" is no tensor of a dtype safetensors holds "
                  f"({type(t).__name__}{' ' + str(t.dtype) if torch.is_tensor(t) else ''})", file=sys.stderr)
            return 1
        raw = t.detach().contiguous().reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b""
        header[name] = {"dtype": dtype, "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    with open(dst, "wb") as f:
        f.write(struct.pack("<Q", len(text)) + text)
        for b in blobs:
            f.write(b)
    return 0


if __name__ == "__main__":
    if len(sys.argv) != 3:
        print("usage: kiln_torch_to_safetensors.py pytorch_model.bin OUT.safetensors", file=sys.stderr)
        sys.exit(2)
    sys.exit(main(sys.argv[1], sys.argv[2]))

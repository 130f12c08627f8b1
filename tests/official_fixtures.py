"""Shared by the official-import tests: the authors' state dicts rebuilt from a fixture's weight bank."""

import hashlib

import torch


def rebuild(plan, bank):
    """Fill rule of the fixtures' README: bank[(offset + j) mod n] * float32(scale), digests checked."""
    state = {}
    for e in plan:
        if e["source"] == "bank":
            idx = (e["bank_offset"] + torch.arange(e["numel"])) % bank.numel()
            t = bank[idx]
            if e["scale"] != 1.0:
                t = t * torch.tensor(e["scale"], dtype=torch.float32)
            t = t.reshape(e["shape"]).contiguous()
            digest = hashlib.sha256(t.numpy().astype("<f4").tobytes()).hexdigest()
            assert digest == e["digest"]["sha256_f32le"], f"fill of {e['key']} is not bit-exact"
        else:
            t = torch.tensor(e["values_flat"], dtype=torch.float32).reshape(e["shape"])
        state[e["key"]] = t
    return state

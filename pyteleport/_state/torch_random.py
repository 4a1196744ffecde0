"""PyTorch's global generators: the CPU one, and each CUDA device's if CUDA
was initialised on the source (restored only where CUDA is available)."""
import torch


def save():
    state = {"cpu": torch.get_rng_state()}
    cuda = getattr(torch, "cuda", None)
    if cuda is not None and cuda.is_initialized():
        state["cuda"] = cuda.get_rng_state_all()
    return state


def restore(state):
    torch.set_rng_state(state["cpu"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])

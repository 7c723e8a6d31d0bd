from typing import Any

from numpy.typing import ArrayLike

__all__ = ["cross_entropy", "cross_entropy_and_grad"]

# A communicator: an mpi4py MPI.Comm or a torch.distributed ProcessGroup
# (recognised by duck typing; neither is imported).
_Comm = Any

def cross_entropy(logits: ArrayLike, target: ArrayLike, *, vocab_comm: _Comm = None,
                  vocab_start: int | None = None, data_comm: _Comm = None, axis: int = -1,
                  weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
                  ignore_index: int = -100, reduction: str = "mean",
                  label_smoothing: float = 0.0, z_loss: float = 0.0,
                  softcap: float | None = None, temperature: float = 1.0,
                  num_threads: int | None = None, return_z_loss: bool = False) -> Any: ...
def cross_entropy_and_grad(logits: ArrayLike, target: ArrayLike, *, vocab_comm: _Comm = None,
                           vocab_start: int | None = None, data_comm: _Comm = None,
                           axis: int = -1, weight: ArrayLike | None = None,
                           sample_weight: ArrayLike | None = None, ignore_index: int = -100,
                           reduction: str = "mean",
                           label_smoothing: float = 0.0, z_loss: float = 0.0,
                           softcap: float | None = None, temperature: float = 1.0,
                           num_threads: int | None = None, return_z_loss: bool = False,
                           grad_output: ArrayLike | None = None,
                           out: Any = None) -> tuple[Any, ...]: ...

from typing import Any

from numpy.typing import ArrayLike

__all__ = ["cross_entropy", "cross_entropy_and_grad", "evaluate", "perplexity",
           "ShardedEvaluation"]

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

class ShardedEvaluation:
    loss: Any
    argmax: Any
    correct: Any
    mean_loss: float
    accuracy: float
    n_counted: int
    def __init__(self, loss: Any, argmax: Any, correct: Any, mean_loss: float,
                 accuracy: float, n_counted: int) -> None: ...
    @property
    def perplexity(self) -> float: ...
    @property
    def bits_per_token(self) -> float: ...

def evaluate(logits: ArrayLike, target: ArrayLike, *, vocab_comm: _Comm = None,
             vocab_start: int | None = None, data_comm: _Comm = None, axis: int = -1,
             weight: ArrayLike | None = None, sample_weight: ArrayLike | None = None,
             ignore_index: int = -100, label_smoothing: float = 0.0, z_loss: float = 0.0,
             softcap: float | None = None, temperature: float = 1.0,
             num_threads: int | None = None) -> ShardedEvaluation: ...
def perplexity(logits: ArrayLike, target: ArrayLike, **options: Any) -> float: ...

"""Aggressive inner loops: train a lagging partner until it catches up, then switch off.

He et al. (2019) traced posterior collapse in VAEs to a *lagging* inference network: early
in training the encoder q_phi(z|x) trails the model posterior p_theta(z|x), which moves
under it, and the decoder learns to ignore z. Their fix is a training schedule with two
small parts, both reusable wherever one partner of a two-player optimisation lags:

- `until_converged`: an inner loop, as one pure function (`lax.while_loop`), that steps
  the lagging partner until its loss stops improving or a step bound is reached. The
  rule is the authors': sum the loss over non-overlapping windows of `window` steps and
  stop after the first window whose mean is not lower than the previous window's;

      stop after step k  iff  k % w == 0  and  L_{(k/w) - 1} - L_{k/w} < tol,
      L_j = (1/w) sum_{i = (j-1) w + 1}^{j w} loss_i,   L_0 = +inf,

  or when k reaches `max_steps`. (The authors use w = 15, at most 100 steps, tol = 0.)
- `switch_off`: a small state machine over a monitored metric that ends the aggressive
  phase for good once the metric stops improving (text: at the first decrease of the
  mutual information I_q on held-out data, checked once an epoch; images: after 5
  epoch-end checks without a new best, counted cumulatively).

Both are vmap-friendly: every seed of a vmapped sweep keeps its own loop count and phase.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp

from stabilizers import checks


class InnerLoopInfo(NamedTuple):
    """What `until_converged` did.

    Attributes:
      steps: int32, the number of inner steps taken (0 when `active` was False).
      converged: bool, True when the window rule stopped the loop; False when it ran to
        `max_steps` or did not run.
      window_loss: float32, the mean loss over the last complete window (+inf if none).
    """

    steps: jax.Array
    converged: jax.Array
    window_loss: jax.Array


class _Loop(NamedTuple):
    carry: Any
    steps: jax.Array
    window_sum: jax.Array
    previous: jax.Array
    last: jax.Array
    converged: jax.Array


def until_converged(
    step: Callable[[Any], tuple[Any, jax.Array]],
    carry: Any,
    *,
    max_steps: int,
    window: int = 15,
    tolerance: float | jax.Array = 0.0,
    active: bool | jax.Array = True,
) -> tuple[Any, InnerLoopInfo]:
    r"""Repeats `carry, loss = step(carry)` until the loss stops improving or `max_steps`.

    The losses of consecutive, non-overlapping windows of `window` steps are averaged;
    after each complete window its mean :math:`L_j` is compared with the previous one and
    the loop stops when it did not improve by at least `tolerance`:

    .. math::
      \text{stop after step } k \iff k \equiv 0 \pmod w \;\wedge\;
      L_{k/w-1} - L_{k/w} < \text{tol}, \qquad L_0 = +\infty,

    so the loop always runs at least `min(window, max_steps)` steps, and it stops at
    `max_steps` regardless. With `window = 15`, `max_steps = 100`, `tolerance = 0` this is
    the encoder loop of He et al. (2019): `step` draws a batch, computes the ELBO loss,
    and updates the encoder only. The loss that `step` returns is the one it computed
    before its update (the training loss of that step), as in the authors' code.

    `step` is any pure function of the carry (params, optimizer state, a key, the next
    batch...); draw fresh randomness inside it from a key in the carry.

    Under `jax.vmap` (over seeds), each element keeps its own count and stopping point,
    but a `while_loop` whose predicate is batched runs until *every* element has stopped:
    the cost of one call is the largest trip count in the batch. The elements that have
    stopped do not change: JAX's batching rule for `while_loop` selects their old carry
    at every extra trip (the step is computed and discarded). The result of each element
    is therefore exactly what an unbatched call would return.

    Args:
      step: `carry -> (carry, loss)`, loss a scalar.
      carry: the initial carry.
      max_steps: the bound on the number of steps, an integer >= 1.
      window: steps per window, an integer >= 1.
      tolerance: the improvement in window-mean loss below which the loop stops (0: stop
        when the loss went up; equal windows continue, as in the authors' code).
      active: when False the loop does not run and `carry` is returned unchanged (a
        per-seed phase flag, e.g. `SwitchOffState.active`).

    Returns:
      `(carry, info)` with `info` an `InnerLoopInfo`.

    Example:
      >>> import jax.numpy as jnp, stabilizers
      >>> def step(x):  # gradient descent on x^2 / 2, loss before the update
      ...     return 0.5 * x, 0.5 * x**2
      >>> x, info = stabilizers.until_converged(step, jnp.float32(1.0), max_steps=100,
      ...                                       window=15)
      >>> int(info.steps)  # never stops improving: runs to the bound
      100

    References:
      He, Spokoyny, Neubig & Berg-Kirkpatrick, Lagging inference networks and posterior
      collapse in variational autoencoders, ICLR 2019, Algorithm 1.
    """
    max_steps = checks.positive_int("max_steps", max_steps)
    window = checks.positive_int("window", window)
    if not callable(step):
        raise ValueError(f"step must be a function carry -> (carry, loss); got {step!r}")

    first_carry, first_loss = jax.eval_shape(step, carry)
    if jax.tree.structure(first_carry) != jax.tree.structure(carry):
        raise ValueError(
            "step must return a carry with the structure of its input; got "
            f"{jax.tree.structure(first_carry)} for {jax.tree.structure(carry)}"
        )
    if first_loss.shape != ():
        raise ValueError(f"step must return a scalar loss; got shape {first_loss.shape}")

    inf = jnp.asarray(jnp.inf, jnp.float32)
    init = _Loop(
        carry=carry,
        steps=jnp.zeros((), jnp.int32),
        window_sum=jnp.zeros((), jnp.float32),
        previous=inf,
        last=inf,
        converged=jnp.zeros((), bool),
    )
    active = jnp.asarray(active, bool)

    def cond(loop: _Loop) -> jax.Array:
        return active & (loop.steps < max_steps) & ~loop.converged

    def body(loop: _Loop) -> _Loop:
        new_carry, loss = step(loop.carry)
        steps = loop.steps + 1
        total = loop.window_sum + jnp.asarray(loss, jnp.float32)
        at_end = steps % window == 0
        mean = total / window
        stop = at_end & (loop.previous - mean < tolerance)
        return _Loop(
            carry=new_carry,
            steps=steps,
            window_sum=jnp.where(at_end, 0.0, total),
            previous=jnp.where(at_end, mean, loop.previous),
            last=jnp.where(at_end, mean, loop.last),
            converged=stop,
        )

    out = jax.lax.while_loop(cond, body, init)
    return out.carry, InnerLoopInfo(out.steps, out.converged, out.last)


class SwitchOffState(NamedTuple):
    """State of a `switch_off` rule.

    Attributes:
      active: bool, whether the phase is still on; once False it stays False.
      reference: float32, the value the next check is compared with: the previous
        metric (`compare="previous"`) or the best one so far (`compare="best"`), in the
        maximised orientation (negated when `maximize=False`).
      misses: int32, checks that did not improve (cumulative, or since the last
        improvement with `reset_on_improvement=True`).
      checks: int32, checks made so far.
    """

    active: jax.Array
    reference: jax.Array
    misses: jax.Array
    checks: jax.Array


class SwitchOff(NamedTuple):
    """A switch-off rule: `state = rule.init()`, then `state = rule.update(state, metric)`."""

    init: Callable[[], SwitchOffState]
    update: Callable[[SwitchOffState, jax.Array], SwitchOffState]


def switch_off(
    *,
    patience: int = 1,
    compare: str = "previous",
    initial: float | None = None,
    maximize: bool = True,
    min_delta: float = 0.0,
    reset_on_improvement: bool = False,
) -> SwitchOff:
    r"""A phase that ends for good once a monitored metric stops improving.

    At each check with metric :math:`m_t` (negated if `maximize=False`) and reference
    :math:`r_{t-1}`, the check is a *miss* when :math:`m_t - r_{t-1} < \delta` (`min_delta`).
    The phase switches off at the check where the number of misses reaches `patience`.
    The reference is the previous metric (`compare="previous"`: :math:`r_t = m_t`) or the
    best so far (`compare="best"`: :math:`r_t = m_t` unless the check missed), starting at
    `initial`. Misses accumulate over the whole run unless `reset_on_improvement`.

    He et al. (2019) check the mutual information :math:`I_q` on held-out data at the end
    of every epoch:

    - text (`text.py`): `switch_off(patience=1, compare="previous", initial=0.0)`, off at
      the first decrease (and after the first epoch if :math:`I_q < 0` there);
    - images (`image.py`): `switch_off(patience=5, compare="best")`, off after the 5th
      epoch without a new best, counted cumulatively (the authors never reset the count).

    The state is a few scalars: under `jax.vmap` every seed has its own phase. Once off,
    `update` leaves the state unchanged.

    Args:
      patience: misses that end the phase, an integer >= 1.
      compare: "previous" or "best".
      initial: the reference before the first check, in the metric's own orientation
        (None: the worst value, so the first check never misses; +-inf are stored as
        the float32 extremes so that the state stays finite).
      maximize: True when a higher metric is better (mutual information), False for a
        loss.
      min_delta: the improvement a check needs not to miss (0: any non-decrease passes,
        as in the authors' code).
      reset_on_improvement: reset the miss count at every improving check (count
        consecutive misses instead of all misses).

    Returns:
      A `SwitchOff` with `init() -> SwitchOffState` and `update(state, metric) -> state`.

    Example:
      >>> import stabilizers
      >>> rule = stabilizers.switch_off(patience=1, compare="previous", initial=0.0)
      >>> s = rule.init()
      >>> for mi in [0.5, 0.9, 1.2, 1.1, 1.5]:
      ...     s = rule.update(s, mi)
      >>> bool(s.active), int(s.checks)  # off at the decrease 1.2 -> 1.1, for good
      (False, 4)

    References:
      He, Spokoyny, Neubig & Berg-Kirkpatrick, Lagging inference networks and posterior
      collapse in variational autoencoders, ICLR 2019, section 4.
    """
    patience = checks.positive_int("patience", patience)
    if compare not in ("previous", "best"):
        raise ValueError(f"compare must be 'previous' or 'best'; got compare={compare!r}")
    for name, value in (("initial", initial), ("min_delta", min_delta)):
        if value is None and name == "initial":
            continue
        if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
            raise ValueError(f"{name} must be a number; got {name}={value!r}")
    sign = 1.0 if maximize else -1.0
    # The reference lives in the state, which must stay finite (the harness treats inf as
    # divergence): "no reference yet" is the most negative float32, not -inf.
    lowest = float(jnp.finfo(jnp.float32).min)
    start = lowest if initial is None else sign * float(initial)
    start = min(max(start, lowest), -lowest)

    def init_fn() -> SwitchOffState:
        return SwitchOffState(
            active=jnp.ones((), bool),
            reference=jnp.asarray(start, jnp.float32),
            misses=jnp.zeros((), jnp.int32),
            checks=jnp.zeros((), jnp.int32),
        )

    def update_fn(state: SwitchOffState, metric: jax.Array) -> SwitchOffState:
        m = sign * jnp.asarray(metric, jnp.float32)
        miss = m - state.reference < min_delta
        misses = state.misses + miss.astype(jnp.int32)
        if reset_on_improvement:
            misses = jnp.where(miss, misses, 0)
        if compare == "previous":
            reference = m
        else:
            reference = jnp.where(miss, state.reference, m)
        new = SwitchOffState(
            active=misses < patience,
            reference=reference,
            misses=misses,
            checks=state.checks + 1,
        )
        # Absorbing: once off, nothing moves.
        return jax.tree.map(lambda n, o: jnp.where(state.active, n, o), new, state)

    return SwitchOff(init_fn, update_fn)

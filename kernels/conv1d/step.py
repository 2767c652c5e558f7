"""The causal conv on one new input per sequence, from the window of its previous inputs (recurrent steps)."""

import triton
import triton.language as tl

from ..common.math import silu_sigmoid


@triton.jit
def conv_step_silu(new_row, state_in_row, state_out_row, weight_ptr, bias_ptr, c, mask_c, store_c, s_state_c,
                   WIDTH: tl.constexpr, WIDTH_P2: tl.constexpr, HAS_BIAS: tl.constexpr):  # fmt: skip
    """silu(conv) (float32) of channels ``c`` of one sequence, whose new inputs are at ``new_row + c`` and whose
    (channels, WIDTH) window state is at ``state_in_row``: the window is the state's last WIDTH - 1 inputs and the new
    one (in the state's dtype), written to ``state_out_row`` for the channels where ``store_c``."""
    k = tl.arange(0, WIDTH_P2)
    inside = mask_c[:, None] & (k[None, :] < WIDTH)
    window_at = c[:, None] * s_state_c + k[None, :]
    older = tl.load(state_in_row + window_at + 1, mask=inside & (k[None, :] < WIDTH - 1), other=0.0)
    new = tl.load(new_row + c, mask=mask_c, other=0.0).to(state_out_row.dtype.element_ty)
    window = tl.where(k[None, :] == WIDTH - 1, new[:, None], older)
    tl.store(state_out_row + window_at, window, mask=inside & store_c[:, None])
    weight = tl.load(weight_ptr + c[:, None] * WIDTH + k[None, :], mask=inside, other=0.0).to(tl.float32)
    x = tl.sum(window.to(tl.float32) * weight, axis=1)
    if HAS_BIAS:
        x += tl.load(bias_ptr + c, mask=mask_c, other=0.0).to(tl.float32)
    return silu_sigmoid(x)[0]

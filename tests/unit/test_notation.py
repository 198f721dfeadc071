"""The page's texts typeset (flowviz.plots.notation.typeset): Unicode sub- and superscripts in Markdown, inline math
where Unicode has none, and names (n_steps, w_scenario) left alone."""

import re

from hypothesis import given
from hypothesis import strategies as st

import flowviz
from flowviz.core.presets import preset_info, preset_names
from flowviz.plots.notation import ASCII_NOTATION, typeset
from flowviz.training.volume import DENSITIES
from flowviz.ui.views.dictionary import dictionary


def test_notation_becomes_unicode_and_inline_math_where_unicode_has_none():
    assert typeset("x_k = x_(k-1) + s_k V_k(x_(k-1))") == "xₖ = xₖ₋₁ + sₖ Vₖ(xₖ₋₁)"
    assert typeset("det(I + s_k DV_k), a_21 = 1/2, a_ij K_j") == "det(I + sₖ DVₖ), a₂₁ = 1/2, aᵢⱼ Kⱼ"
    assert typeset("ρ_0 on R^(2+p) and R^3, ∂_t u, t_(k-1)⁺") == "ρ₀ on ℝ²⁺ᵖ and ℝ³, ∂ₜ u, tₖ₋₁⁺"
    assert typeset("f(x_L), E[f(X_T)], Σ_(j<i)") == r"f($x_{L}$), E[f($X_{T}$)], $\Sigma_{j<i}$"
    assert typeset("f(x_L)", latex=False) == "f(x_L)"  # plain text (the room's follower page)
    assert typeset("n_steps = 64, semi_lagrangian, w_scenario, time_mode") == (
        "n_steps = 64, semi_lagrangian, w_scenario, time_mode"
    )


@given(st.text(alphabet="xsVkLT_()-+12 aR^Σ$ρ", max_size=40))
def test_typesetting_twice_changes_nothing_and_text_without_notation_is_kept(text):
    once = typeset(text)
    assert typeset(once) == once
    if "_" not in text and "^" not in text:
        assert once == text


def _left(text: str) -> list[str]:
    return [m.group(0) for m in ASCII_NOTATION.finditer(typeset(text))]


def test_every_scenario_text_the_dictionary_and_the_density_names_are_typeset_whole():
    for name in preset_names():
        info = preset_info(name)
        assert not _left(info["title"]) and not _left(info["description"]), name
    configs = [
        dict(),
        dict(scheme="rk4", time_mode="per_step"),
        dict(scheme="midpoint"),
        dict(scheme="plain"),
        dict(viscosity=0.1),
        dict(lift=1),
        dict(head="fixed"),
    ]
    for kw in configs:
        text = dictionary(flowviz.Config(**kw))
        assert not _left(text), kw
        assert len(re.findall(r"(?<!\\)\$", typeset(text))) % 2 == 0  # inline math opened and closed
    assert [typeset(v) for v in DENSITIES.values()][0] == "KDE of xₖ"

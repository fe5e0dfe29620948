"""The allocator's share of a measured latency, as columns, JSON and a sentence.

A backend timed with the plain process's allocator carries its page faults
per pass; when the tuned allocator was timed beside it, its figures and the
difference (``allocator_tax``: how much slower the default allocator made
the median) sit in the same row.
"""

from __future__ import annotations

from typing import Any

from lwprof.runtime.allocator import DEFAULT, SIGNIFICANT_FAULTS_PER_PASS, TUNED, TUNED_ENVIRONMENT, deployment_hint, significant

__all__ = ["allocator_columns", "allocator_comparison", "allocator_notes", "faults_text"]


def faults_text(value: float | None) -> str:
    return "?" if value is None else f"{value:,.0f}"


def allocator_columns(result: Any) -> dict[str, Any]:
    columns: dict[str, Any] = {
        "allocator": result.allocator,
        "minor_page_faults_per_pass": result.minor_page_faults_per_pass,
        "tuned_median_s": None,
        "tuned_iqr_s": None,
        "tuned_minor_page_faults_per_pass": None,
        "allocator_tax": None,
        # How many fresh processes the figure pools (--processes): a plain process's fault count is one draw
        "timed_processes": (len(result.measurement.metadata.get("samples_per_process") or ()) or 1) if result.measurement else None,
    }
    check = result.allocator_check
    if check is not None and check.measurement is not None and result.measurement is not None:
        tuned, default = check.measurement.stats, result.measurement.stats
        columns.update(
            tuned_median_s=tuned.median,
            tuned_iqr_s=tuned.iqr,
            tuned_minor_page_faults_per_pass=check.minor_page_faults_per_pass,
            allocator_tax=default.median / tuned.median - 1 if tuned.median else None,
        )
    elif result.allocator == TUNED:
        columns.update(tuned_median_s=result.measurement.stats.median if result.measurement else None,
                       tuned_minor_page_faults_per_pass=result.minor_page_faults_per_pass)
    return columns


def allocator_comparison(result: Any) -> dict[str, Any] | None:
    """Both settings' figures for ``profile.json``, and how to get the tuned one."""
    if result.measurement is None:
        return None
    runs = {result.allocator: (result.measurement, result.minor_page_faults_per_pass, result.process)}
    check = result.allocator_check
    if check is not None and check.measurement is not None:
        runs[check.allocator] = (check.measurement, check.minor_page_faults_per_pass, check.process)
    comparison: dict[str, Any] = {
        allocator: {
            "median_s": measurement.stats.median,
            "iqr_s": measurement.stats.iqr,
            "n": measurement.stats.n,
            "minor_page_faults_per_pass": faults,
            "tuning": process.get("allocator_tuning"),
        }
        for allocator, (measurement, faults, process) in runs.items()
    }
    comparison["significant_faults_per_pass"] = SIGNIFICANT_FAULTS_PER_PASS
    if check is not None and check.skipped:
        comparison["tuned_skipped"] = check.skipped
    if DEFAULT in runs and TUNED in runs:
        comparison["default_vs_tuned"] = runs[DEFAULT][0].stats.median / runs[TUNED][0].stats.median
    if TUNED in runs:
        comparison["how_to_get_tuned"] = (
            "set " + " ".join(f"{k}={v}" for k, v in TUNED_ENVIRONMENT.items())
            + " in the deployed process's environment, or LD_PRELOAD jemalloc or tcmalloc"
        )
    return comparison


def allocator_notes(summary: list[dict[str, Any]]) -> list[str]:
    """One sentence per backend whose plain process page-faulted significantly."""
    notes = []
    for row in summary:
        faults, tax = row.get("minor_page_faults_per_pass"), row.get("allocator_tax")
        if row.get("allocator") != DEFAULT or not significant(faults):
            continue
        text = (
            f"{row['backend']} (batch {row['batch_size']}): {faults:,.0f} minor page faults per pass: glibc returns "
            "the activations' memory to the kernel after each pass and faults it in again."
        )
        if tax is not None:
            text += (
                f" With the allocator tuned: median {row['tuned_median_s'] * 1e3:.3f} ms against "
                f"{row['median_s'] * 1e3:.3f} ms ({tax:+.1%} for the default)."
            )
        text += f" In deployment: {deployment_hint()} (or LD_PRELOAD jemalloc/tcmalloc); --allocator tuned times that."
        if (row.get("timed_processes") or 1) == 1:
            text += (
                " How many faults a plain process takes depends on its heap's history, so another process running the "
                "same model can take hundreds more or fewer and differ by several percent: --processes 5 pools five."
            )
        notes.append(text)
    return notes

"""A straightforward per-pair Python implementation of the MeSH similarity definitions.

It follows docs/mesh-similarity.md line by line with dicts and sets, one pair at a time, with
no cleverness. Two uses: the tests cross-check the SQL views against it on the real MeSH tree,
and bench/mesh_sim.py reports how much faster the SQL is. The library itself never calls it.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable


class MeshReference:
    """MeSH closure, IC and similarity from tree rows and corpus annotations.

    ``tree``: (tree_number, descriptor_ui) rows. ``annotations``: (pmid, descriptor_ui) rows.
    ``descriptors``: extra descriptor UIs without a tree number (optional).
    """

    def __init__(
        self,
        tree: Iterable[tuple[str, str]],
        annotations: Iterable[tuple[int, str]],
        descriptors: Iterable[str] = (),
        include_self: bool = True,
        granularity: str = "letter",
    ):
        self.owner: dict[str, str] = {}
        self.trees: dict[str, list[str]] = defaultdict(list)
        for tn, ui in tree:
            self.owner[tn] = ui
            self.trees[ui].append(tn)
        for ui in self.trees:
            self.trees[ui].sort()
        self.descriptors = set(self.trees) | set(descriptors)

        # parents: the owner of the parent tree number of each tree number
        self.parents: dict[str, set[str]] = defaultdict(set)
        self.children: dict[str, list[tuple[str, str]]] = defaultdict(list)  # KAILIN's ChildrenData
        for tn, ui in self.owner.items():
            parent_tn = tn.rpartition(".")[0]
            if parent_tn in self.owner and self.owner[parent_tn] != ui:
                self.parents[ui].add(self.owner[parent_tn])
                self.children[self.owner[parent_tn]].append((ui, self._category(tn, granularity)))
        # ancestors: the term and everything reachable through parents
        self.ancestors: dict[str, set[str]] = {}
        for ui in self.descriptors:
            anc, stack = {ui}, [ui]
            while stack:
                for p in self.parents.get(stack.pop(), ()):
                    if p not in anc:
                        anc.add(p)
                        stack.append(p)
            self.ancestors[ui] = anc
        self.descendants: dict[str, set[str]] = defaultdict(set)
        for ui, anc in self.ancestors.items():
            for x in anc:
                self.descendants[x].add(ui)

        # corpus IC: distinct articles annotated with t or a descendant, over N articles
        docs: dict[int, set[str]] = defaultdict(set)
        for pmid, ui in annotations:
            if ui is not None:
                docs[pmid].add(ui)
        self.docs = docs
        n = len(docs)
        articles_of: dict[str, set[int]] = defaultdict(set)
        for pmid, uis in docs.items():
            for ui in uis:
                for x in self.ancestors.get(ui, ()):
                    articles_of[x].add(pmid)
        self.count = {ui: len(articles_of.get(ui, ())) for ui in self.descriptors}
        # Seco: 1 - ln(desc + 1) / ln(M), desc = descriptors strictly below (itself excluded)
        m = len(self.descriptors)
        self.ic = {
            "corpus": {ui: (-math.log(c / n) if c > 0 else None) for ui, c in self.count.items()},
            "intrinsic": {
                ui: (
                    1 - math.log(len(self.descendants[ui]) - 1 + 1) / math.log(m) if m > 1 else None
                )
                for ui in self.descriptors
            },
        }
        self._kailin_ic(docs, include_self, granularity)

    # ------------------------------------------------------------------ KAILIN's IC
    def _category(self, tn: str, granularity: str) -> str:
        return tn[0] if granularity == "letter" else tn.split(".")[0]

    def _kailin_ic(self, docs, include_self: bool, granularity: str) -> None:
        ann: dict[str, int] = defaultdict(int)
        for uis in docs.values():
            for ui in uis:
                ann[ui] += 1
        self.categories: dict[str, set[str]] = {
            ui: {self._category(tn, granularity) for tn in tns} for ui, tns in self.trees.items()
        }
        total: dict[str, int] = defaultdict(int)
        for ui, cats in self.categories.items():
            for c in cats:
                total[c] += ann.get(ui, 0)
        self.kic: dict[str, dict[str, float]] = {}
        for ui, cats in self.categories.items():
            below = self._kailin_descendants(ui)
            if include_self:
                below |= {(ui, c) for c in cats}
            self.kic[ui] = {}
            for c in cats:
                s = sum(ann.get(d, 0) for d, dc in below if dc == c) / total[c] if total[c] else 0
                self.kic[ui][c] = -math.log10(s) if 0 < s <= 1 else 0.0
        self.max_ic: dict[str, float] = defaultdict(float)
        for ics in self.kic.values():
            for c, v in ics.items():
                self.max_ic[c] = max(self.max_ic[c], v)

    def _kailin_descendants(self, mesh_id: str) -> set[tuple[str, str]]:
        """KAILIN's get_all_descendants: (child, category of the child's tree number) pairs."""
        out: set[tuple[str, str]] = set()
        stack = [mesh_id]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in out:
                    out.add(child)
                    stack.append(child[0])
        return out

    # ------------------------------------------------------------------ term measures
    def _mica(self, a: str, b: str, ic: str) -> float | None:
        common = self.ancestors[a] & self.ancestors[b]
        if not common:
            return None
        return max(self.ic[ic][x] for x in common)

    def sim(self, a: str, b: str, measure: str = "lin", ic: str = "corpus") -> float | None:
        if measure == "kailin":
            return self.kailin(a, b)
        if a not in self.descriptors or b not in self.descriptors:
            return None
        ica, icb = self.ic[ic][a], self.ic[ic][b]
        if ica is None or icb is None:
            return None
        m = self._mica(a, b, ic)
        if measure == "resnik":
            return 0.0 if m is None else m
        if a == b:
            return 1.0
        if m is None:
            return 0.0
        if measure == "lin":
            return 0.0 if ica + icb == 0 else 2 * m / (ica + icb)
        if measure == "jc":
            return 1 / (1 + ((ica - m) + (icb - m)))
        raise ValueError(measure)

    def kailin(self, a: str, b: str) -> float | None:
        """KAILIN's ``simil``: LCA by longest common dotted prefix, mean of Lin, Jiang, Rel."""
        if a not in self.descriptors or b not in self.descriptors:
            return None
        if a == b:
            return 1.0
        lca = None
        for t1 in self.trees.get(a, []):
            p1 = t1.split(".")
            for t2 in self.trees.get(b, []):
                p2 = t2.split(".")
                common = []
                for x, y in zip(p1, p2, strict=False):
                    if x != y:
                        break
                    common.append(x)
                s = ".".join(common)
                if lca is None or len(s) > len(lca):
                    lca = s
        if not lca or lca not in self.owner:
            return 0.0
        L = self.owner[lca]
        ic1, ic2, icl = self.kic[a], self.kic[b], self.kic[L]
        scores = []
        for c in icl:
            if c in ic1 and c in ic2 and self.max_ic[c] > 0:
                ictmp = (icl[c] / self.max_ic[c] + icl[c] / self.max_ic[c]) / 2
                summed = ic1[c] + ic2[c]
                if summed > 0:
                    lin = 2 * ictmp / summed
                    jiang = 1 - min(1, summed - 2 * ictmp)
                    rel = lin * (1 - 10 ** (-ictmp * self.max_ic[c]))
                    scores += [lin, jiang, rel]
        if not scores:
            return 0.0
        return sum(max(0.0, min(1.0, s)) for s in scores) / len(scores)

    # ------------------------------------------------------------------ documents
    def doc_sim(
        self,
        terms_a: Iterable[str],
        terms_b: Iterable[str],
        measure: str = "lin",
        ic: str = "corpus",
        aggregate: str = "mean",
    ) -> float | None:
        ta, tb = sorted(set(terms_a)), sorted(set(terms_b))
        grid = [[self.sim(x, y, measure, ic) for y in tb] for x in ta]
        values = [v for row in grid for v in row if v is not None]
        if not values:
            return None
        if aggregate == "mean":
            return sum(values) / len(values)
        best_a = [
            max(v for v in row if v is not None) for row in grid if any(v is not None for v in row)
        ]
        cols = [[grid[i][j] for i in range(len(ta))] for j in range(len(tb))]
        best_b = [
            max(v for v in col if v is not None) for col in cols if any(v is not None for v in col)
        ]
        return (sum(best_a) / len(best_a) + sum(best_b) / len(best_b)) / 2


class KailinCode:
    """KAILIN's MeSH scorer, re-implemented function by function from its repository.

    Source: ``DPO/mesh_score/cal_mesh_score.py`` of
    github.com/coco11563/KAILIN-Knowledge-Hierarchy-Guided-Biological-Medical-Dataset-Distillation-for-Domain-LLM-Training
    (commit 515034b). That repository carries no licence, so its code is not copied here; each
    method below names the function it re-implements and keeps its arithmetic and its order of
    operations, including the float sums. Its SQLite tables and frequency file (which the
    repository reads but does not build) become dicts built from the same inputs as mkailin's:

    - DescriptorData / DescriptorTreeData: ``tree`` rows; a descriptor's tree numbers sorted;
    - ChildrenData: (child, category of the child's tree number) under the owner of the parent
      tree number, in tree-number order;
    - the frequency file: ``freq[category][ui] = annotations(ui) / total(category)`` as floats,
      annotations(ui) = the documents annotated with ui, over the descriptors with a tree number
      in the category (mkailin's mesh_kailin_ic_with);
    - MaxICData: the largest ``getMeSHIC`` value in each category.

    Documents keep only descriptors with a tree number: KAILIN builds its descriptor file with
    ``mesh_process/process_xml.py``, which skips a record whose tree list is empty, and keeps a
    document's MeSH term only when that file has it.
    """

    def __init__(self, tree: Iterable[tuple[str, str]], annotations: Iterable[tuple[int, str]]):
        rows = sorted(tree)
        self.owner = dict(rows)  # DescriptorTreeData: tree number -> UI
        self.trees: dict[str, list[str]] = defaultdict(list)  # DescriptorData.TreeNumberList
        for tn, ui in rows:
            self.trees[ui].append(tn)
        self.children: dict[str, list[tuple[str, str]]] = defaultdict(list)  # ChildrenData
        for tn, ui in rows:
            parent = self.owner.get(tn.rpartition(".")[0])
            if parent is not None and parent != ui:
                self.children[parent].append((ui, tn.split(".")[0]))
        self.docs: dict[int, list[str]] = defaultdict(list)
        for pmid, ui in annotations:
            if ui in self.trees and ui not in self.docs[pmid]:
                self.docs[pmid].append(ui)
        counts: dict[str, int] = defaultdict(int)
        for uis in self.docs.values():
            for ui in uis:
                counts[ui] += 1
        total: dict[str, int] = defaultdict(int)
        for ui, tns in self.trees.items():
            for c in {tn.split(".")[0] for tn in tns}:
                total[c] += counts.get(ui, 0)
        self.freq: dict[str, dict[str, float]] = {c: {} for c in total}
        for ui, tns in self.trees.items():
            for c in {tn.split(".")[0] for tn in tns}:
                if counts.get(ui):
                    self.freq[c][ui] = counts[ui] / total[c]
        self._ic: dict[str, dict[str, float]] = {}
        self.max_ic: dict[str, float] = defaultdict(float)  # MaxICData
        for ui in self.trees:
            for c, v in self.ic(ui).items():
                self.max_ic[c] = max(self.max_ic[c], v)

    def descendants(self, mesh_id: str) -> list[tuple[str, str]]:
        """get_all_descendants: a depth-first walk of ChildrenData from mesh_id, itself left out."""
        out: list[tuple[str, str]] = []
        seen: set[tuple[str, str]] = set()
        stack = [mesh_id]
        while stack:
            for child in self.children.get(stack.pop(), ()):
                if child not in seen:
                    seen.add(child)
                    out.append(child)
                    stack.append(child[0])
        return out

    def ic(self, mesh_id: str) -> dict[str, float]:
        """getMeSHIC: per category of mesh_id, -log10 of the float sum of its descendants'
        frequencies in that category (walk order), 0 unless the sum is in (0, 1]."""
        if mesh_id not in self._ic:
            below = self.descendants(mesh_id)
            out = {}
            for c in sorted({tn.split(".")[0] for tn in self.trees[mesh_id]}):
                freqs = self.freq.get(c, {})
                s = sum(freqs.get(child, 0) for child, child_c in below if child_c == c)
                out[c] = -math.log(s, 10) if 0 < s <= 1 else 0
            self._ic[mesh_id] = out
        return self._ic[mesh_id]

    def lca(self, a: str, b: str) -> str | None:
        """lca_tree / find_lowest_common_ancestor: the owner of the longest (in characters)
        common dotted prefix over all pairs of tree numbers, ties to the first pair."""
        lca = None
        for t1 in self.trees[a]:
            for t2 in self.trees[b]:
                common = []
                for p1, p2 in zip(t1.split("."), t2.split("."), strict=False):
                    if p1 != p2:
                        break
                    common.append(p1)
                s = ".".join(common)
                if lca is None or len(s) > len(lca):
                    lca = s
        return self.owner.get(lca) if lca else None

    def simil(self, a: str, b: str) -> float:
        """simil, with calculate_ictmps and calculate_metrics."""
        if a == b:
            return 1
        max_1 = {c: self.max_ic[c] for c in self.ic(a)}  # getMaxIC
        max_2 = {c: self.max_ic[c] for c in self.ic(b)}
        ic_1, ic_2 = self.ic(a), self.ic(b)
        summed = {k: ic_1.get(k, 0) + ic_2.get(k, 0) for k in set(ic_1) | set(ic_2)}
        lca = self.lca(a, b)
        if not lca or not self.ic(lca):
            return 0
        ictmps = {}
        for c, v in self.ic(lca).items():
            if c in max_1 and c in max_2 and max_1[c] > 0 and max_2[c] > 0:
                ictmps[c] = (v / max_1[c] + v / max_2[c]) / 2
        lin, jiang, rel = {}, {}, {}
        for c, t in ictmps.items():
            if c in summed and summed[c] > 0:
                m = max(max_1.get(c, 0), max_2.get(c, 0))
                lin[c] = 2 * t / summed[c]
                jiang[c] = 1 - min(1, summed[c] - 2 * t)
                rel[c] = lin[c] * (1 - (10 ** (-t * m)))
        scores = [v for d in (lin, jiang, rel) for v in d.values()]
        if not scores:
            return 0
        clipped = [max(0, min(1, s)) for s in scores]
        return sum(clipped) / len(clipped)

    def compare_lists(self, list_1: list[str], list_2: list[str]) -> float:
        """compare_lists: the mean over the cross product (NaN for an empty list, as np.mean)."""
        import numpy as np

        scores = [self.simil(x, y) for x in list_1 for y in list_2]
        return float(np.mean(scores)) if scores else math.nan

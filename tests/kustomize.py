"""The subset of kustomize that ``deploy/k8s`` uses, to render it where no kustomize binary exists (this machine has
none, and none installs from PyPI): ``resources`` (files and directories with their own kustomization), ``namespace``
(namespaced kinds only), ``labels`` (metadata only), ``images`` (newName, newTag) and ``patches`` (strategic-merge
files, matched by kind and name; maps merge, lists of named items merge by name, other lists are replaced). Anything
else in a kustomization is refused, so the manifests cannot drift past what is checked."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

Resource = dict[str, Any]
SUPPORTED = {"apiVersion", "kind", "resources", "namespace", "labels", "images", "patches"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition"}


class KustomizeError(ValueError):
    pass


def _documents(path: Path) -> list[Resource]:
    return [doc for doc in yaml.safe_load_all(path.read_text()) if doc]


def _merge(base: Any, patch: Any) -> Any:
    if isinstance(base, dict) and isinstance(patch, dict):
        merged = dict(base)
        for key, value in patch.items():
            merged[key] = _merge(base[key], value) if key in base else copy.deepcopy(value)
        return merged
    if (isinstance(base, list) and isinstance(patch, list) and all(isinstance(x, dict) and "name" in x
                                                                    for x in base + patch)):
        by_name = {item["name"]: item for item in base}
        merged_list = [_merge(by_name[item["name"]], item) if item["name"] in by_name else item for item in patch]
        return merged_list + [item for item in base if item["name"] not in {p["name"] for p in patch}]
    return copy.deepcopy(patch)


def _image(reference: str, rules: list[dict[str, str]]) -> str:
    name, _, tag = reference.partition(":")
    for rule in rules:
        if rule["name"] == name:
            return f"{rule.get('newName', name)}:{rule.get('newTag', tag or 'latest')}"
    return reference


def _containers(resource: Resource) -> list[dict[str, Any]]:
    spec = resource.get("spec", {}).get("template", {}).get("spec", {})
    return list(spec.get("containers", [])) + list(spec.get("initContainers", []))


def render(folder: Path) -> list[Resource]:
    kustomization: Resource = yaml.safe_load((folder / "kustomization.yaml").read_text())
    unknown = set(kustomization) - SUPPORTED
    if unknown:
        raise KustomizeError(f"{folder}: fields this renderer does not implement: {sorted(unknown)}")
    resources: list[Resource] = []
    for entry in kustomization.get("resources", []):
        target = (folder / entry).resolve()
        resources += render(target) if target.is_dir() else _documents(target)
    for patch_entry in kustomization.get("patches", []):
        for patch in _documents(folder / patch_entry["path"]):
            matches = [i for i, r in enumerate(resources)
                       if r["kind"] == patch["kind"] and r["metadata"]["name"] == patch["metadata"]["name"]]
            if len(matches) != 1:
                raise KustomizeError(f"patch {patch['kind']}/{patch['metadata']['name']} matches {len(matches)}")
            resources[matches[0]] = _merge(resources[matches[0]], patch)
    for resource in resources:
        for label in kustomization.get("labels", []):
            resource.setdefault("metadata", {}).setdefault("labels", {}).update(label["pairs"])
        if "namespace" in kustomization and resource["kind"] not in CLUSTER_SCOPED:
            resource["metadata"]["namespace"] = kustomization["namespace"]
        for container in _containers(resource):
            container["image"] = _image(container["image"], kustomization.get("images", []))
    return resources

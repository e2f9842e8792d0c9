"""Alias kept for outside code: the public read-out lived here before the
package was split by job. It is :mod:`conceptlib.model.readout` (also
``from conceptlib import load_concept_model, concept_maps``)."""

from conceptlib.model.readout import ConceptModel, concept_maps, load_concept_model

__all__ = ["ConceptModel", "concept_maps", "load_concept_model"]

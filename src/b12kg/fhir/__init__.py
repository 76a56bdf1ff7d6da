"""Every FHIR adapter in one place: FHIR R4 in (:mod:`.read`, ``b12kg import-fhir`` and FHIR files given
to ``recommend``), FHIR R4 out (:mod:`.write`: a Bundle per patient; :mod:`.guideline`: the guideline as
a PlanDefinition), and their commands (:mod:`.cli`). The CDS Hooks service, a server, sits beside the
other servers (:mod:`b12kg.cds_hooks`)."""

from b12kg.fhir.read import Bindings, ImportResult, PatientReport, import_fhir, is_fhir_json, load_fhir_patient

__all__ = ["Bindings", "ImportResult", "PatientReport", "import_fhir", "is_fhir_json", "load_fhir_patient"]

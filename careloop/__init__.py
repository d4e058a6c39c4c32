"""careloop: app-reported symptoms and telehealth sessions in, FHIR R4 out, care team alerted.

The top-level folders `services/`, `fhir/`, `integrations/` and `workflows/` are linked into this
package (``careloop.services`` ...) so that nothing is importable as top-level ``fhir``, the import
name owned by ``fhir.resources``.
"""

__version__ = "0.1.0"

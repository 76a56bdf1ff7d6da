#+ summary: Delete from the derived graph everything derived for a batch of patients, so that their new
#+          results can be inserted in the same request (derive --replace batches on a remote store).
#+          This update defines what a patient owns; the remote store's requests normally read those
#+          triples (cohort/owned-subjects, cohort/subject-triples, kept alike by a test) and name them
#+          in DELETE DATA, and fall back on this update when they hold a blank node or would make too
#+          large a request.
#+ parameters: ?patient (IRI, one row per patient)
#+ output: none (an update: three operations, in this order)
#+ What a patient owns in the derived graph: (1) what was derived about the facts its derivation used
#+ (prov:used: the normalised values of its results), unless another derivation used the same fact;
#+ (2) the patient node's own derived triples (its states); (3) every node derived for it
#+ (b12:forPatient: derivations, recommendations, missing-data and not-covered records). (1) runs
#+ first: it finds the facts through the derivation that (3) deletes. Shared nodes (the engine agent;
#+ the ontology version, which every derivation uses) are never deleted here: cohort/derived-orphans
#+ finds them once nothing points at them. Oxigraph 0.5 evaluates a NOT EXISTS whose inner filter
#+ reads ?patient (bound by VALUES) about a thousand times slower than this one, which reads ?derivation.
PREFIX b12: <https://w3id.org/b12kg/ontology#>
PREFIX prov: <http://www.w3.org/ns/prov#>
DELETE { GRAPH <urn:b12kg:graph:derived> { ?fact ?p ?o } }
WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?derivation b12:forPatient ?patient ; prov:used ?fact . ?fact ?p ?o }
  FILTER (?fact != ?patient)
  FILTER NOT EXISTS {
    GRAPH <urn:b12kg:graph:derived> { ?otherDerivation prov:used ?fact }
    FILTER (?otherDerivation != ?derivation)
  }
} ;
DELETE { GRAPH <urn:b12kg:graph:derived> { ?patient ?p ?o } }
WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?patient ?p ?o }
} ;
DELETE { GRAPH <urn:b12kg:graph:derived> { ?node ?p ?o } }
WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?node b12:forPatient ?patient ; ?p ?o }
}

#+ summary: Delete every triple of the given subjects from the derived graph (the orphans that
#+          cohort/derived-orphans finds).
#+ parameters: ?orphan (IRI, one row per subject)
#+ output: none (an update)
DELETE { GRAPH <urn:b12kg:graph:derived> { ?orphan ?p ?o } }
WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?orphan ?p ?o }
}

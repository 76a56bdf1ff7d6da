#+ summary: Delete every triple of the given subjects from the derived graph (the orphans that
#+          cohort/derived-orphans finds). The remote store reads them (cohort/subject-triples) and
#+          names them in DELETE DATA instead, unless they hold a blank node.
#+ parameters: ?orphan (IRI, one row per subject)
#+ output: none (an update)
DELETE { GRAPH <urn:b12kg:graph:derived> { ?orphan ?p ?o } }
WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?orphan ?p ?o }
}

#+ summary: Delete the derived graph's triples about blank nodes that cohort/derived-orphans finds as
#+          orphans. b12kg never writes a blank node into the derived graph, but a hand-made triple may
#+          leave one there, and a blank node cannot be bound in a VALUES block, so these are deleted
#+          by pattern, with derived-orphans' own conditions (keep the two alike). derive --replace
#+          batches runs it, and derived-orphans again, while blank orphans are found (each run deletes
#+          one level of nested blank nodes).
#+ parameters: none
#+ output: none (an update)
PREFIX b12: <https://w3id.org/b12kg/ontology#>
PREFIX prov: <http://www.w3.org/ns/prov#>
DELETE { GRAPH <urn:b12kg:graph:derived> { ?orphan ?p ?o } }
WHERE {
  GRAPH <urn:b12kg:graph:derived> { ?orphan ?p ?o }
  FILTER (isBlank(?orphan))
  FILTER NOT EXISTS { GRAPH <urn:b12kg:graph:derived> { ?orphan b12:forPatient ?owner } }
  FILTER NOT EXISTS { GRAPH <urn:b12kg:graph:derived> { ?anyNode b12:forPatient ?orphan } }
  FILTER NOT EXISTS { GRAPH <urn:b12kg:graph:derived> { ?derivation prov:used ?orphan } }
  FILTER NOT EXISTS { GRAPH <urn:b12kg:graph:derived> { ?activity prov:wasAssociatedWith ?orphan } }
}

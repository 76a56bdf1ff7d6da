// The OWL API's own OWL 2 DL profile checker over b12kg's ontology modules (run by src/b12kg/owl_profile.py).
// Usage: java ProfileCheck ONTOLOGY_DIR FILE...; imports resolve through ONTOLOGY_DIR/catalog-v001.xml, never
// the network. Prints, for each FILE, "# FILE" and then one line per violation of its imports closure:
// kind TAB entity IRI (or empty) TAB axiom TAB ontology IRI.
import java.io.File;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import org.semanticweb.owlapi.apibinding.OWLManager;
import org.semanticweb.owlapi.model.IRI;
import org.semanticweb.owlapi.model.OWLAxiom;
import org.semanticweb.owlapi.model.OWLEntity;
import org.semanticweb.owlapi.model.OWLOntology;
import org.semanticweb.owlapi.model.OWLOntologyManager;
import org.semanticweb.owlapi.profiles.OWL2DLProfile;
import org.semanticweb.owlapi.profiles.OWLProfileViolation;
import org.semanticweb.owlapi.util.SimpleIRIMapper;

public class ProfileCheck {
    private static String clean(Object o) {
        return o == null ? "" : o.toString().replace('\t', ' ').replace('\n', ' ');
    }

    public static void main(String[] args) throws Exception {
        File dir = new File(args[0]);
        String catalog = new String(Files.readAllBytes(new File(dir, "catalog-v001.xml").toPath()), StandardCharsets.UTF_8);
        for (int i = 1; i < args.length; i++) {
            OWLOntologyManager manager = OWLManager.createOWLOntologyManager();
            Matcher entry = Pattern.compile("name=\"([^\"]+)\"\\s+uri=\"([^\"]+)\"").matcher(catalog);
            while (entry.find()) {
                manager.getIRIMappers().add(new SimpleIRIMapper(IRI.create(entry.group(1)), IRI.create(new File(dir, entry.group(2)))));
            }
            OWLOntology ontology = manager.loadOntologyFromOntologyDocument(new File(dir, args[i]));
            System.out.println("# " + args[i]);
            for (OWLProfileViolation v : new OWL2DLProfile().checkOntology(ontology).getViolations()) {
                Object expression = null;
                OWLAxiom axiom = null;
                try {
                    expression = v.getExpression();
                } catch (IllegalStateException noExpression) {
                    // a violation about an ontology annotation has neither expression nor axiom
                }
                try {
                    axiom = v.getAxiom();
                } catch (IllegalStateException noAxiom) {
                    // see above
                }
                String entity = expression instanceof OWLEntity ? ((OWLEntity) expression).getIRI().toString()
                        : expression instanceof IRI ? expression.toString() : "";
                String in = v.getOntology() == null ? "" : clean(v.getOntology().getOntologyID().getOntologyIRI().orElse(null));
                String text = axiom == null ? clean(v.toString()) : clean(axiom);
                System.out.println(v.getClass().getSimpleName() + "\t" + entity + "\t" + text + "\t" + in);
            }
        }
    }
}

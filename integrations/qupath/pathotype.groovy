/**
 * pathotype for QuPath (0.4 or newer): sends the open slide to a pathotype server, waits for its
 * answer, and imports the tiles as detections classified CLL / FL / MCL with their probabilities
 * as measurements. With an annotation selected, only the detections inside it are kept.
 *
 * Run it from Automate > Script editor. Settings come from the environment (or edit them below):
 *   PATHOTYPE_URL         the server, default http://127.0.0.1:8080
 *   PATHOTYPE_API_KEY     a key from `pathotype keys create`, when the server requires one
 *   PATHOTYPE_SLIDE_ROOT  the folder the server was started with as --slide-root, as this machine
 *                         sees it: slides under it are sent by path (no upload), others uploaded
 *
 * Research use only, not for diagnosis.
 */
import groovy.json.JsonOutput
import groovy.json.JsonSlurper
import java.net.URI
import java.net.http.HttpClient
import java.net.http.HttpRequest
import java.net.http.HttpResponse
import java.nio.file.Files
import java.nio.file.Path
import java.nio.file.Paths
import qupath.lib.io.PathIO

def SERVER = System.getenv('PATHOTYPE_URL') ?: 'http://127.0.0.1:8080'
def API_KEY = System.getenv('PATHOTYPE_API_KEY')
def SLIDE_ROOT = System.getenv('PATHOTYPE_SLIDE_ROOT')

def imageData = getCurrentImageData()
if (imageData == null) throw new IllegalStateException('pathotype: open a slide first')
Path file = Paths.get(imageData.getServer().getURIs()[0])
def client = HttpClient.newHttpClient()

def builder = { String url ->
    def b = HttpRequest.newBuilder(URI.create(url))
    if (API_KEY) b.header('Authorization', 'Bearer ' + API_KEY)
    return b
}
def send = { HttpRequest request ->
    def response = client.send(request, HttpResponse.BodyHandlers.ofString())
    if (response.statusCode() >= 400) {
        def error = new JsonSlurper().parseText(response.body())?.error
        throw new RuntimeException("pathotype: ${error?.message ?: response.body()} [${error?.code ?: response.statusCode()}]")
    }
    return response
}

HttpRequest submit
if (SLIDE_ROOT && file.toAbsolutePath().startsWith(Paths.get(SLIDE_ROOT).toAbsolutePath())) {
    def relative = Paths.get(SLIDE_ROOT).toAbsolutePath().relativize(file.toAbsolutePath()).toString()
    submit = builder(SERVER + '/api/v1/slides')
        .header('Content-Type', 'application/json')
        .POST(HttpRequest.BodyPublishers.ofString(JsonOutput.toJson([path: relative])))
        .build()
} else {
    // A multipart upload streamed from the file: the slide is never held in memory.
    def boundary = '----pathotype-' + UUID.randomUUID()
    def head = "--${boundary}\r\nContent-Disposition: form-data; name=\"slide\"; filename=\"${file.getFileName()}\"\r\n" +
        "Content-Type: application/octet-stream\r\n\r\n"
    def tail = "\r\n--${boundary}--\r\n"
    def body = HttpRequest.BodyPublishers.concat(
        HttpRequest.BodyPublishers.ofString(head),
        HttpRequest.BodyPublishers.ofFile(file),
        HttpRequest.BodyPublishers.ofString(tail))
    submit = builder(SERVER + '/api/v1/slides')
        .header('Content-Type', "multipart/form-data; boundary=${boundary}")
        .POST(body)
        .build()
}
def job = new JsonSlurper().parseText(send(submit).body())
println "pathotype: job ${job.id} ${job.status}"

while (job.status == 'queued' || job.status == 'running') {
    Thread.sleep(2000)
    job = new JsonSlurper().parseText(send(builder(SERVER + job.links.self).GET().build()).body())
    println "pathotype: ${job.status}, ${job.progress.done} of ${job.progress.total} tiles"
}
if (job.status != 'done') throw new RuntimeException("pathotype: the job failed: ${job.error?.message} [${job.error?.code}]")

// The GeoJSON is in level-0 pixels, QuPath's own image coordinates: read it as QuPath objects.
def geojson = send(builder(SERVER + job.links.geojson).GET().build()).body()
def tmp = Files.createTempFile('pathotype-', '.geojson')
Files.writeString(tmp, geojson)
def objects = PathIO.readObjects(tmp)
Files.deleteIfExists(tmp)
def selected = getSelectedObject()
if (selected != null && selected.hasROI() && selected.isAnnotation()) {
    def roi = selected.getROI()
    objects = objects.findAll { roi.contains(it.getROI().getCentroidX(), it.getROI().getCentroidY()) }
}
addObjects(objects)
fireHierarchyUpdate()
def r = job.result
println "pathotype: ${objects.size()} tiles imported; slide: ${r.status == 'uncertain' ? 'uncertain (refer to a pathologist), leaning ' : ''}${r.predicted} (${String.format('%.0f', r.confidence * 100)}%)"

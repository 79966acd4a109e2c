"""dicom-svc through the real DICOMweb client `dicomweb-client` (PyPI), and every file of
`pydicom-data` (PyPI) stored and retrieved byte for byte.

Usage: dicom_clients.py BASE_URL   (BASE_URL = http://host:port/{ws}-{name}/v2)

1. dicomweb-client: store an instance made with pydicom, retrieve it, its metadata at
   instance, series and study level, retrieve the series, search for it at study, series
   and instance level (also fuzzy), retrieve its frame and a rendered PNG, delete the study.
2. pydicom-data: each file is POSTed as a single application/dicom part; a stored one is read
   back with `transfer-syntax=*` and must equal the file with a zeroed preamble (Azure zeroes
   it); a rejected one must carry a FailureReason. Each study is deleted afterwards (several
   files share UIDs). One line per file, `stored`/`rejected REASON`, then a summary.
3. Compressed pixel data: each losslessly compressed (JPEG 2000, RLE) or big endian
   pydicom-data file with an explicit VR little endian twin is stored, then retrieved in the default
   transfer syntax (explicit VR little endian: decoded by the service), as frames and
   rendered; the decoded pixels must equal the twin's. A garbled JPEG 2000 stream and a
   JPEG-LS file (no decoder) are stored, and decoding them is refused with 406.

Prints "dicomweb-client: ok", "pydicom-data: ok" and "compressed: ok" when everything held.
"""

import sys
import warnings
from io import BytesIO
from pathlib import Path

import pydicom
import requests
from dicomweb_client.api import DICOMwebClient
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid


def check(cond, message):
    if not cond:
        raise SystemExit(f"FAILED: {message}")


def made_with_pydicom():
    ds = Dataset()
    ds.SOPClassUID = SecondaryCaptureImageStorage
    ds.SOPInstanceUID = generate_uid()
    ds.StudyInstanceUID = generate_uid()
    ds.SeriesInstanceUID = generate_uid()
    ds.PatientID = "PY-1"
    ds.PatientName = "Client^Python"
    ds.StudyDate = "20240301"
    ds.Modality = "OT"
    ds.Rows, ds.Columns = 2, 2
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = "MONOCHROME2"
    ds.BitsAllocated = ds.BitsStored = 8
    ds.HighBit = 7
    ds.PixelRepresentation = 0
    ds.PixelData = bytes([0, 64, 128, 255])
    # A PS3.10 file as a file on disk would be: preamble and "DICM" prefix (pydicom writes the
    # meta group without its group length; the service accepts that, as Azure does).
    ds.preamble = bytes(128)
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    return ds


def client_scenario(base):
    client = DICOMwebClient(url=base)
    ds = made_with_pydicom()
    study, series, sop = ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.SOPInstanceUID
    try:
        response = client.store_instances([ds])
    except requests.HTTPError as e:
        raise SystemExit(f"FAILED: store_instances: {e}: {e.response.text}")
    stored = [item.ReferencedSOPInstanceUID for item in response.ReferencedSOPSequence]
    check(stored == [sop], f"store_instances answered {response}")

    got = client.retrieve_instance(study, series, sop)
    check(got.SOPInstanceUID == sop, "retrieve_instance: SOPInstanceUID")
    check(str(got.PatientName) == "Client^Python", "retrieve_instance: PatientName")
    check(got.PixelData == ds.PixelData, "retrieve_instance: PixelData")

    meta = client.retrieve_instance_metadata(study, series, sop)
    as_ds = Dataset.from_json(meta)
    check(as_ds.PatientID == "PY-1", f"instance metadata: {meta}")
    check("7FE00010" not in meta, "instance metadata has no pixel data")
    check(len(client.retrieve_series_metadata(study, series)) == 1, "series metadata")
    check(len(client.retrieve_study_metadata(study)) == 1, "study metadata")
    series_instances = client.retrieve_series(study, series)
    check([i.SOPInstanceUID for i in series_instances] == [sop], "retrieve_series")

    studies = client.search_for_studies(search_filters={"PatientID": "PY-1", "StudyInstanceUID": study})
    check([Dataset.from_json(r).StudyInstanceUID for r in studies] == [study], f"search_for_studies: {studies}")
    fuzzy = client.search_for_studies(
        search_filters={"PatientName": "pyth", "StudyInstanceUID": study}, fuzzymatching=True
    )
    check(len(fuzzy) == 1, f"fuzzy search_for_studies: {fuzzy}")
    found_series = client.search_for_series(study, search_filters={"Modality": "OT"})
    check(
        [Dataset.from_json(r).SeriesInstanceUID for r in found_series] == [series],
        f"search_for_series: {found_series}",
    )
    found_instances = client.search_for_instances(study, series, fields=["all"])
    check(
        [Dataset.from_json(r).SOPInstanceUID for r in found_instances] == [sop],
        f"search_for_instances: {found_instances}",
    )
    check(Dataset.from_json(found_instances[0]).Rows == 2, "search_for_instances: includefield=all")
    check(client.search_for_studies(search_filters={"PatientID": "nobody-has-this"}) == [], "no match")

    frames = client.retrieve_instance_frames(study, series, sop, frame_numbers=[1])
    check(frames == [ds.PixelData], f"retrieve_instance_frames: {frames}")
    png = client.retrieve_instance_rendered(study, series, sop, media_types=("image/png",))
    check(png.startswith(b"\x89PNG"), "retrieve_instance_rendered: not a PNG")

    client.delete_study(study)
    try:
        client.retrieve_study_metadata(study)
        check(False, "the deleted study is still there")
    except requests.HTTPError as e:
        check(e.response.status_code == 404, f"after delete: {e}")
    print("dicomweb-client: ok")


def zeroed_preamble(data):
    if len(data) >= 132 and data[128:132] == b"DICM":
        return bytes(128) + data[128:]
    return data


def pydicom_data_scenario(base):
    import data_store

    folder = Path(data_store.__file__).parent / "data"
    files = sorted(folder.glob("*.dcm"))
    check(len(files) > 50, f"pydicom-data has {len(files)} files")
    session = requests.Session()
    stored, rejected = 0, 0
    for path in files:
        data = path.read_bytes()
        r = session.post(
            f"{base}/studies",
            data=data,
            headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
        )
        check(r.status_code in (200, 202, 409), f"{path.name}: status {r.status_code}: {r.text}")
        body = r.json()
        referenced = body.get("00081199", {}).get("Value", [])
        failed = body.get("00081198", {}).get("Value", [])
        if referenced:
            url = referenced[0]["00081190"]["Value"][0]
            back = session.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
            check(back.status_code == 200, f"{path.name}: retrieve {back.status_code}")
            check(
                back.content == zeroed_preamble(data),
                f"{path.name}: retrieved bytes differ from those sent",
            )
            warning = referenced[0].get("00081196", {}).get("Value", [None])[0]
            study = url.split("/studies/")[1].split("/")[0]
            d = session.delete(f"{base}/studies/{study}")
            check(d.status_code == 204, f"{path.name}: delete {d.status_code}")
            stored += 1
            print(f"{path.name}: stored" + (f" (warning {warning})" if warning else ""))
        else:
            check(len(failed) == 1, f"{path.name}: neither stored nor failed: {body}")
            reason = failed[0]["00081197"]["Value"][0]
            comments = [
                c["00000902"]["Value"][0]
                for c in failed[0].get("00741048", {}).get("Value", [])
            ]
            rejected += 1
            print(f"{path.name}: rejected {reason} {comments}")
    print(f"pydicom-data: {stored} stored, {rejected} rejected")
    print("pydicom-data: ok")


# (file in another transfer syntax, its explicit VR little endian twin) in pydicom-data:
# lossless compression or big endian, so the pixels agree.
LOSSLESS_TWINS = [
    ("MR2_J2KR.dcm", "MR2_UNCR.dcm"),
    ("RG1_J2KR.dcm", "RG1_UNCR.dcm"),
    ("US1_J2KR.dcm", "US1_UNCR.dcm"),
    ("emri_small_jpeg_2k_lossless.dcm", "emri_small.dcm"),
    ("emri_small_RLE.dcm", "emri_small.dcm"),
    ("OBXXXX1A_rle.dcm", "OBXXXX1A.dcm"),
    ("OBXXXX1A_rle_2frame.dcm", "OBXXXX1A_2frame.dcm"),
    ("emri_small_big_endian.dcm", "emri_small.dcm"),
    ("OBXXXX1A_expb.dcm", "OBXXXX1A.dcm"),
    ("OBXXXX1A_expb_2frame.dcm", "OBXXXX1A_2frame.dcm"),
]


def instance_url(session, base, data, name):
    r = session.post(
        f"{base}/studies",
        data=data,
        headers={"Content-Type": "application/dicom", "Accept": "application/dicom+json"},
    )
    # 202: stored with a warning (some lack PatientID, which v2 accepts).
    check(r.status_code in (200, 202), f"{name}: store {r.status_code}: {r.text}")
    return r.json()["00081199"]["Value"][0]["00081190"]["Value"][0]


def retrieve_decoded(session, url, name):
    """The instance at `url` in the default transfer syntax: decoded by the service."""
    r = session.get(url, headers={"Accept": "application/dicom"})
    check(r.status_code == 200, f"{name}: retrieve {r.status_code}: {r.text}")
    back = pydicom.dcmread(BytesIO(r.content))
    check(
        back.file_meta.TransferSyntaxUID == ExplicitVRLittleEndian,
        f"{name}: sent as {back.file_meta.TransferSyntaxUID}",
    )
    return back


def check_not_decodable(session, url, name):
    """Everything that needs the pixel data decoded is refused with 406."""
    for path, accept in [
        (url, "application/dicom"),
        (f"{url}/frames/1", "application/octet-stream"),
        (f"{url}/rendered", "image/png"),
    ]:
        r = session.get(path, headers={"Accept": accept})
        check(r.status_code == 406, f"{name}: {path} as {accept}: {r.status_code}")


def delete_study_of(session, base, url):
    study = url.split("/studies/")[1].split("/")[0]
    check(session.delete(f"{base}/studies/{study}").status_code == 204, f"delete {study}")


def compressed_scenario(base):
    import data_store
    import numpy

    folder = Path(data_store.__file__).parent / "data"
    session = requests.Session()
    for compressed, twin in LOSSLESS_TWINS:
        data = (folder / compressed).read_bytes()
        original = pydicom.dcmread(folder / twin)
        url = instance_url(session, base, data, compressed)
        back = retrieve_decoded(session, url, compressed)
        check(
            numpy.array_equal(back.pixel_array, original.pixel_array),
            f"{compressed}: decoded pixels differ from {twin}",
        )
        # Frames: each one's bytes, as many as the native frame holds.
        frames = int(getattr(original, "NumberOfFrames", 1) or 1)
        frame_bytes = original.Rows * original.Columns * original.SamplesPerPixel * (
            original.BitsAllocated // 8
        )
        r = session.get(f"{url}/frames/{frames}", headers={"Accept": "application/octet-stream"})
        check(r.status_code == 200, f"{compressed}: frame {frames}: {r.status_code} {r.text}")
        check(len(r.content) == frame_bytes, f"{compressed}: frame of {len(r.content)} bytes")
        r = session.get(f"{url}/rendered", headers={"Accept": "image/png"})
        check(r.status_code == 200, f"{compressed}: rendered {r.status_code}: {r.text}")
        check(r.content.startswith(b"\x89PNG"), f"{compressed}: rendered is not a PNG")
        delete_study_of(session, base, url)
        print(f"{compressed}: decoded equal to {twin}")
    # JPEG without a twin: lossless (process 14), and lossy baseline compared with what
    # pydicom's own decoder (Pillow) makes of it, within the rounding of the two decoders.
    for name, pillow_decodes in [
        ("JPGLosslessP14SV1_1s_1f_8b.dcm", False),
        ("color3d_jpeg_baseline.dcm", True),
    ]:
        data = (folder / name).read_bytes()
        original = pydicom.dcmread(folder / name)
        url = instance_url(session, base, data, name)
        back = retrieve_decoded(session, url, name)
        frames = int(getattr(original, "NumberOfFrames", 1) or 1)
        shape = (frames,) if frames > 1 else ()
        shape += (original.Rows, original.Columns)
        shape += (original.SamplesPerPixel,) if original.SamplesPerPixel > 1 else ()
        check(back.pixel_array.shape == shape, f"{name}: decoded {back.pixel_array.shape}")
        if pillow_decodes:
            diff = numpy.abs(
                back.pixel_array.astype(numpy.int32) - original.pixel_array.astype(numpy.int32)
            )
            check(diff.mean() < 1.0, f"{name}: decoded pixels differ by {diff.mean()} on average")
        delete_study_of(session, base, url)
        print(f"{name}: decoded")
    # A JPEG 2000 stream garbled after its first bytes: stored (STOW does not decode), and
    # every decoding of it is 406, never a 500.
    data = bytearray((folder / "emri_small_jpeg_2k_lossless.dcm").read_bytes())
    start = data.find(b"\xe0\x7f\x10\x00") + 200
    for k in range(start, len(data) - 16, 37):
        data[k] = (data[k] * 7 + k) % 256
    url = instance_url(session, base, bytes(data), "garbled JPEG 2000")
    check_not_decodable(session, url, "garbled JPEG 2000")
    delete_study_of(session, base, url)
    # JPEG-LS: no decoder linked. Stored and sent as stored; decoding it is 406.
    name = "emri_small_jpeg_ls_lossless.dcm"
    data = (folder / name).read_bytes()
    url = instance_url(session, base, data, name)
    r = session.get(url, headers={"Accept": "application/dicom; transfer-syntax=*"})
    check(r.status_code == 200 and r.content == zeroed_preamble(data), f"{name}: as stored")
    check_not_decodable(session, url, name)
    delete_study_of(session, base, url)
    print("compressed: ok")


def main():
    base = sys.argv[1].rstrip("/")
    warnings.simplefilter("ignore")
    client_scenario(base)
    pydicom_data_scenario(base)
    compressed_scenario(base)


if __name__ == "__main__":
    main()

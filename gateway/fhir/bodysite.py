"""BodyPartExamined (0018,0015) defined terms mapped to SNOMED CT, as in DICOM PS3.16 Annex L (Table L-1).

Source and edition: the term -> concept pairs of PS3.16 2023b Table L-1 restricted to CID 4031 "Common Anatomic
Regions" (the rows DCMTK's dcmsr/cmr/cid4031e.cc lists from the same table); SNOMED CT codes and meanings are those
of CID 4031 as shipped in pydicom 3.0's generated concept dictionaries (after CP 1962: ABDOMEN 818981001, CHEST
816094009, PELVIS 816092008). tests/unit/fhir/test_bodysite.py checks every row against pydicom again. Terms that
are not in this table (local or retired terms, free text) map to text only, never to a guessed code.
"""

from __future__ import annotations

SNOMED_CT = "http://snomed.info/sct"

# Defined term: (CID 4031 keyword, SNOMED CT code, code meaning).
BODY_PARTS: dict[str, tuple[str, str, str]] = {
    "ABDOMEN": ("Abdomen", "818981001", "Abdomen"),
    "ABDOMENPELVIS": ("AbdomenAndPelvis", "818982008", "Abdomen and Pelvis"),
    "ACJOINT": ("AcromioclavicularJoint", "85856004", "Acromioclavicular joint"),
    "ANKLE": ("AnkleJoint", "70258002", "Ankle joint"),
    "BILEDUCT": ("BileDuct", "28273000", "Bile duct"),
    "BILIARYTRACT": ("BiliaryTract", "34707002", "Biliary tract"),
    "BLADDER": ("Bladder", "89837001", "Bladder"),
    "BREAST": ("Breast", "76752008", "Breast"),
    "BRONCHUS": ("Bronchus", "955009", "Bronchus"),
    "CALCANEUS": ("Calcaneus", "80144004", "Calcaneus"),
    "CSPINE": ("CervicalSpine", "122494005", "Cervical spine"),
    "CTSPINE": ("CervicoThoracicSpine", "1217257000", "Cervico-thoracic spine"),
    "CHEST": ("Chest", "816094009", "Chest"),
    "CHESTABDOMEN": ("ChestAndAbdomen", "416550000", "Chest and Abdomen"),
    "CHESTABDPELVIS": ("ChestAbdomenAndPelvis", "416775004", "Chest, Abdomen and Pelvis"),
    "CLAVICLE": ("Clavicle", "51299004", "Clavicle"),
    "COCCYX": ("Coccyx", "64688005", "Coccyx"),
    "COLON": ("Colon", "71854001", "Colon"),
    "COMMONBILEDUCT": ("CommonBileDuct", "79741001", "Common bile duct"),
    "DUODENUM": ("Duodenum", "38848004", "Duodenum"),
    "ELBOW": ("ElbowJoint", "16953009", "Elbow joint"),
    "WHOLEBODY": ("EntireBody", "38266002", "Entire body"),
    "ESOPHAGUS": ("Esophagus", "32849002", "Esophagus"),
    "EXTREMITY": ("Extremity", "66019005", "Extremity"),
    "EYE": ("Eye", "81745001", "Eye"),
    "FEMUR": ("Femur", "71341001", "Femur"),
    "FIBULA": ("Fibula", "87342007", "Fibula"),
    "FINGER": ("Finger", "7569003", "Finger"),
    "FOOT": ("Foot", "56459004", "Foot"),
    "FOREARM": ("Forearm", "14975008", "Forearm"),
    "GALLBLADDER": ("Gallbladder", "28231008", "Gallbladder"),
    "HAND": ("Hand", "85562004", "Hand"),
    "HEAD": ("Head", "69536005", "Head"),
    "HEADNECK": ("HeadAndNeck", "774007", "Head and Neck"),
    "HEART": ("Heart", "80891009", "Heart"),
    "HIP": ("HipJoint", "24136001", "Hip joint"),
    "HUMERUS": ("Humerus", "85050009", "Humerus"),
    "ILEUM": ("Ileum", "34516001", "Ileum"),
    "ILIUM": ("Ilium", "22356005", "Ilium"),
    "IAC": ("InternalAuditoryCanal", "361078006", "Internal Auditory Canal"),
    "JAW": ("JawRegion", "661005", "Jaw region"),
    "JEJUNUM": ("Jejunum", "21306003", "Jejunum"),
    "KNEE": ("Knee", "72696002", "Knee"),
    "LARGEINTESTINE": ("LargeIntestine", "14742008", "Large intestine"),
    "LARYNX": ("Larynx", "4596009", "Larynx"),
    "LOWERLEG": ("LowerLeg", "30021000", "Lower leg"),
    "LOWERLIMB": ("LowerLimb", "61685007", "Lower limb"),
    "LSPINE": ("LumbarSpine", "122496007", "Lumbar spine"),
    "LSSPINE": ("LumboSacralSpine", "1217253001", "Lumbo-sacral spine"),
    "MANDIBLE": ("Mandible", "91609006", "Mandible"),
    "MASTOID": ("MastoidBone", "59066005", "Mastoid bone"),
    "MAXILLA": ("Maxilla", "70925003", "Maxilla"),
    "MEDIASTINUM": ("Mediastinum", "72410000", "Mediastinum"),
    "NECK": ("Neck", "45048000", "Neck"),
    "NECKCHEST": ("NeckAndChest", "417437006", "Neck and Chest"),
    "NECKCHESTABDOMEN": ("NeckChestAndAbdomen", "416152001", "Neck, Chest and Abdomen"),
    "NECKCHESTABDPELV": ("NeckChestAbdomenAndPelvis", "416319003", "Neck, Chest, Abdomen and Pelvis"),
    "OPTICCANAL": ("OpticCanal", "55024004", "Optic canal"),
    "ORBIT": ("OrbitalStructure", "363654007", "Orbital structure"),
    "PANCREAS": ("Pancreas", "15776009", "Pancreas"),
    "PANCREATICDUCT": ("PancreaticDuct", "69930009", "Pancreatic duct"),
    "PANCBILEDUCT": ("PancreaticDuctAndBileDuctSystems", "110621006", "Pancreatic duct and bile duct systems"),
    "PAROTID": ("ParotidGland", "45289007", "Parotid gland"),
    "PATELLA": ("Patella", "64234005", "Patella"),
    "PELVIS": ("Pelvis", "816092008", "Pelvis"),
    "PELVISLOWEXTREMT": ("PelvisAndLowerExtremities", "1231522001", "Pelvis and lower extremities"),
    "PHANTOM": ("Phantom", "706342009", "Phantom"),
    "PROSTATE": ("Prostate", "41216001", "Prostate"),
    "RECTUM": ("Rectum", "34402009", "Rectum"),
    "RIB": ("Rib", "113197003", "Rib"),
    "SIJOINT": ("SacroiliacJoint", "39723000", "Sacroiliac joint"),
    "SSPINE": ("Sacrum", "54735007", "Sacrum"),
    "SCAPULA": ("Scapula", "79601000", "Scapula"),
    "SELLA": ("SellaTurcica", "42575006", "Sella turcica"),
    "SESAMOID": ("SesamoidBonesOfFoot", "58742003", "Sesamoid bones of foot"),
    "SHOULDER": ("Shoulder", "16982005", "Shoulder"),
    "SKULL": ("Skull", "89546000", "Skull"),
    "SMALLINTESTINE": ("SmallIntestine", "30315005", "Small intestine"),
    "SPINE": ("Spine", "421060004", "Spine"),
    "SCJOINT": ("SternoclavicularJoint", "7844006", "Sternoclavicular joint"),
    "STERNUM": ("Sternum", "56873002", "Sternum"),
    "STOMACH": ("Stomach", "69695003", "Stomach"),
    "SUBMANDIBULAR": ("SubmandibularGland", "54019009", "Submandibular gland"),
    "TMJ": ("TemporomandibularJoint", "53620006", "Temporomandibular joint"),
    "THIGH": ("Thigh", "68367000", "Thigh"),
    "TSPINE": ("ThoracicSpine", "122495006", "Thoracic spine"),
    "TLSPINE": ("ThoracoLumbarSpine", "1217256009", "Thoraco-lumbar spine"),
    "THUMB": ("Thumb", "76505004", "Thumb"),
    "TOE": ("Toe", "29707007", "Toe"),
    "TRACHEA": ("Trachea", "44567001", "Trachea"),
    "UPPERARM": ("UpperArm", "40983000", "Upper arm"),
    "UPPERLIMB": ("UpperLimb", "53120007", "Upper limb"),
    "UPRURINARYTRACT": ("UpperUrinaryTract", "431491007", "Upper urinary tract"),
    "URETER": ("Ureter", "87953007", "Ureter"),
    "URETHRA": ("Urethra", "13648007", "Urethra"),
    "WRIST": ("WristJoint", "74670003", "Wrist joint"),
    "ZYGOMA": ("Zygoma", "13881006", "Zygoma"),
}


def body_site(body_part_examined: str | None) -> tuple[str, str] | None:
    """Return (SNOMED CT code, meaning) for a BodyPartExamined defined term, or None when Annex L has no row."""
    if not body_part_examined:
        return None
    row = BODY_PARTS.get(body_part_examined.strip().upper())
    return (row[1], row[2]) if row else None

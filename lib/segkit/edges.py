"""Edges: alpha from the model's probabilities, and ``--refine-edges`` (snap them to the photo's).

Alpha. A cut-out's transparency comes from the model's probability at full resolution (upsampled
from the network's own resolution, never a thresholded mask), mapped through a short ramp around
the threshold: probability ``t`` gives alpha 0.5, ``t - RAMP/2`` and below 0, ``t + RAMP/2`` and
above 1. Thresholding the alpha at 0.5 therefore gives exactly the mask.

Refinement. A guided filter (He, Sun, Tang, "Guided Image Filtering", TPAMI 2013; the fast,
subsampled form of He & Sun, arXiv:1505.00996) with the photo as guide: within a window the
output is a linear function of the photo's colour, so the probability's 0.5 crossing moves onto
the photo's own edge. Written here with cv2.boxFilter: OpenCV's ximgproc.guidedFilter ships only
in opencv-contrib, whose wheel would overwrite the cv2 of the opencv-python-headless wheel that
tf-models-official needs; pymatting's closed-form matting solves a sparse system per frame
(seconds, not the 15 ms a video frame can spend).
"""
from __future__ import annotations

import cv2
import numpy as np

#: Width of the probability interval over which alpha goes from 0 to 1 (centred on the
#: threshold). 0.3: a soft 1-3 px edge for the person model's upsampled maps, without the grey
#: fringe of the full probability (alpha = p shows a halo of 20-40 % background around people).
RAMP = 0.3
#: Guided filter window radius, as a fraction of the image diagonal (DAVIS F's boundary tolerance
#: is 0.008 of it): 10 px at 854x480. Small enough to keep thin limbs, large enough to reach past
#: the 5 px steps of YOLO's 160x160 prototypes.
RADIUS = 0.01
#: Regularisation (colours in 0..1): edges whose colour varies less than about sqrt(EPS) within a
#: window are smoothed over rather than followed (noise, JPEG blocks).
EPS = 1e-3
#: The filter's coefficients are computed on a copy shrunk this many times per side at most
#: (they vary slowly: box means), the output at full size: 16x less work at 854x480.
SUBSAMPLE = 4
#: Filter passes, each on the previous one's output. One pass moves an edge that lies a few
#: pixels off the photo's about halfway (its linear fit straddles both edges), a second brings
#: it onto it (a 6 px offset at 854x480: 306 -> 303 -> 300). On DAVIS the second pass costs as
#: much again and lowered car-shadow's J (0.952 -> 0.942 with yolov5s_seg_coco_int8): one.
PASSES = 1


def ramp(p: np.ndarray, threshold: float, width: float = RAMP) -> np.ndarray:
    """float32 alpha in 0..1 from probabilities ``p``: 0 at ``threshold - width/2`` and below,
    0.5 at the threshold, 1 at ``threshold + width/2`` and above (the ends kept inside 0..1)."""
    t = float(threshold)
    lo, hi = max(t - width / 2, 0.0), min(t + width / 2, 1.0)
    p = np.asarray(p, np.float32)
    below = (p - lo) * np.float32(0.5 / max(t - lo, 1e-6))
    above = np.float32(0.5) + (p - t) * np.float32(0.5 / max(hi - t, 1e-6))
    a = np.where(p < t, below, above)
    return np.clip(a, 0.0, 1.0, out=a)


#: How far outside the mask the lower half of the ramp may reach, as a fraction of the image
#: diagonal (at least 2 px): an edge's soft fringe, never a faint ghost of a blob the threshold
#: rejected (the person model paints doubtful regions at probability 0.3-0.5).
FRINGE = 0.004


def edge_alpha(p: np.ndarray, threshold: float, width: float = RAMP) -> np.ndarray:
    """``ramp`` with the part below the threshold kept only next to the mask (``FRINGE``)."""
    a = ramp(p, threshold, width)
    faint = (a > 0) & (a < 0.5)
    if faint.any():
        h, w = a.shape
        k = max(2, int(round(FRINGE * float(np.hypot(h, w)))))
        near = cv2.dilate((a >= 0.5).view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * k + 1, 2 * k + 1)))
        a[faint & (near == 0)] = 0
    return a


def guided_filter(guide: np.ndarray, src: np.ndarray, radius: int, eps: float = EPS,
                  subsample: int = 1) -> np.ndarray:
    """He et al.'s guided filter of ``src`` (float [H,W]) with an RGB uint8 ``guide`` [H,W,3].

    ``subsample`` s > 1: the fast guided filter (coefficients on an s-times smaller copy,
    applied to the full-size guide). Returns float32 [H,W] (not clipped). Every array is kept
    planar: numpy's reductions over a last axis of 3 cost 50x a plane-by-plane sum here."""
    h, w = src.shape
    src = src.astype(np.float32, copy=False)
    s = max(1, int(subsample))
    if s > 1:
        size = (max(1, w // s), max(1, h // s))
        # bilinear sampling, as the fast guided filter does (nearest there): INTER_AREA costs
        # 10-50x more at a ratio that is not a whole number, for coefficients that are box
        # means anyway
        small = cv2.resize(guide, size, interpolation=cv2.INTER_LINEAR)
        p = cv2.resize(src, size, interpolation=cv2.INTER_LINEAR)
    else:
        small, p = guide, src
    R, G, B = (c.astype(np.float32) * np.float32(1 / 255) for c in cv2.split(small))
    r = max(1, int(round(radius / s)))
    k = (2 * r + 1, 2 * r + 1)

    def box(planes):
        m = cv2.boxFilter(np.dstack(planes), -1, k, borderType=cv2.BORDER_REFLECT)
        return [m[..., i] for i in range(m.shape[-1])]

    # every mean the filter needs, in one call: I (3), p, I*p (3), I_i*I_j (6)
    mR, mG, mB, mp, mRp, mGp, mBp, RR, RG, RB, GG, GB, BB = box(
        [R, G, B, p, R * p, G * p, B * p, R * R, R * G, R * B, G * G, G * B, B * B])
    c0, c1, c2 = mRp - mR * mp, mGp - mG * mp, mBp - mB * mp  # cov(I, p)
    # Sigma + eps*U, the guide's 3x3 colour covariance per pixel (symmetric: 6 entries)
    rr, rg, rb = RR - mR * mR + eps, RG - mR * mG, RB - mR * mB
    gg, gb, bb = GG - mG * mG + eps, GB - mG * mB, BB - mB * mB + eps
    # its inverse by the adjugate; a = inverse @ cov, b = mean(p) - a . mean(I)
    i_rr, i_rg, i_rb = gg * bb - gb * gb, gb * rb - rg * bb, rg * gb - gg * rb
    i_gg, i_gb, i_bb = rr * bb - rb * rb, rb * rg - rr * gb, rr * gg - rg * rg
    inv_det = 1.0 / (rr * i_rr + rg * i_rg + rb * i_rb)
    aR = (i_rr * c0 + i_rg * c1 + i_rb * c2) * inv_det
    aG = (i_rg * c0 + i_gg * c1 + i_gb * c2) * inv_det
    aB = (i_rb * c0 + i_gb * c1 + i_bb * c2) * inv_det
    b = mp - aR * mR - aG * mG - aB * mB
    ab = cv2.boxFilter(np.dstack([aR, aG, aB, b]), -1, k, borderType=cv2.BORDER_REFLECT)
    if s > 1:
        ab = cv2.resize(ab, (w, h), interpolation=cv2.INTER_LINEAR)
        R, G, B = (c.astype(np.float32) * np.float32(1 / 255) for c in cv2.split(guide))
    aR, aG, aB, b = cv2.split(ab)
    return aR * R + aG * G + aB * B + b


def radius_for(height: int, width: int) -> int:
    return max(2, int(round(RADIUS * float(np.hypot(height, width)))))


def refine_probability(image: np.ndarray, p: np.ndarray, radius: int | None = None) -> np.ndarray:
    """Probabilities ``p`` [H,W] (float 0..1) snapped to ``image``'s edges: float32 0..1."""
    h, w = p.shape
    r = radius_for(h, w) if radius is None else radius
    s = max(1, min(SUBSAMPLE, r // 2))
    q = p
    for _ in range(PASSES):
        q = guided_filter(image, q, r, EPS, s)
        np.clip(q, 0.0, 1.0, out=q)
    return q


def no_new_blobs(before: np.ndarray, after: np.ndarray) -> np.ndarray:
    """bool [H,W]: ``after`` without the blobs it gained that do not touch ``before`` and without
    the holes it gained that do not touch ``before``'s background. Refining moves edges; it must
    not paint a photo's texture (JPEG blocks in a sky next to a head) as specks of the object."""
    n, labels = cv2.connectedComponents(after.view(np.uint8), connectivity=8)
    if n > 2:
        keep = np.zeros(n, bool)
        keep[np.unique(labels[before & after])] = True
        keep[0] = False
        after = keep[labels]
    background = ~after
    n, labels = cv2.connectedComponents(background.view(np.uint8), connectivity=4)
    if n > 2:
        keep = np.zeros(n, bool)
        keep[np.unique(labels[~before & background])] = True
        keep[0] = True  # label 0: the object itself
        after = ~(keep[labels] & background) | after
    return after


def _refined(image: np.ndarray, p: np.ndarray, threshold: float, r: int) -> np.ndarray:
    """refine_probability, then back to ``p`` wherever the refined mask gained a blob or a hole
    that is not attached to the original mask's (``no_new_blobs``)."""
    q = refine_probability(image, p, r)
    before, after = p >= threshold, q >= threshold
    # Where the model was unsure (a broad halo of 0.3-0.7 around a head), the filter copies the
    # background's own lines (window frames, JPEG blocks) into the mask as 1-2 px slivers. An
    # opening drops them; what the model was sure of (its mask eroded by r) keeps its thin parts.
    disk = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (3, 3))
    core = cv2.erode(before.view(np.uint8), cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1)))
    after = (cv2.morphologyEx(after.view(np.uint8), cv2.MORPH_OPEN, disk) | (after.view(np.uint8) & core)).view(bool)
    kept = no_new_blobs(before, after)
    undo = kept != (q >= threshold)
    if undo.any():  # back to the model's own probability (its side of the threshold)
        q[undo] = p[undo]
        still = undo & ((q >= threshold) != kept)  # e.g. a sliver the model itself was sure of
        q[still] = np.where(kept[still], threshold, np.nextafter(np.float32(threshold), np.float32(0)))
    return q


def refine(image: np.ndarray, seg):
    """``seg`` with its probabilities snapped to ``image``'s edges (``--refine-edges``): a
    semantic result's maps, an instance result's soft masks (each within its box, widened by
    twice the filter's radius); the boolean masks are the refined probabilities at the
    threshold, so cut-outs, overlays and saved masks all follow the refined edge."""
    from dataclasses import replace

    h, w = seg.height, seg.width
    r = radius_for(h, w)
    if seg.is_semantic:
        if not seg.probs.shape[-1]:
            return seg
        probs = seg.probs.copy()
        lo = seg.mask_threshold - RAMP / 2
        for c in range(probs.shape[-1]):
            # only around what may show: where the probability reaches the ramp, widened by
            # twice the radius (the filter reads r around each pixel, its coefficients r more)
            rows = np.flatnonzero((probs[..., c] > lo).any(axis=1))
            if not len(rows):
                continue
            cols = np.flatnonzero((probs[rows[0]:rows[-1] + 1, :, c] > lo).any(axis=0))
            y0, y1 = max(rows[0] - 2 * r, 0), min(rows[-1] + 1 + 2 * r, h)
            x0, x1 = max(cols[0] - 2 * r, 0), min(cols[-1] + 1 + 2 * r, w)
            probs[y0:y1, x0:x1, c] = _refined(image[y0:y1, x0:x1], probs[y0:y1, x0:x1, c],
                                              seg.mask_threshold, r)
        return replace(seg, probs=probs)
    if not len(seg):
        return seg
    soft = np.asarray(seg.soft) if seg.soft is not None else seg.masks.view(np.uint8) * np.uint8(255)
    new_soft = np.zeros_like(soft)
    margin = 2 * r
    for i, (x0, y0, x1, y1) in enumerate(seg.boxes.tolist()):
        ys, xs = np.nonzero(soft[i].any(axis=1))[0], np.nonzero(soft[i].any(axis=0))[0]
        if not len(ys):
            continue
        # the mask's own extent (it may overhang its box by a pixel), widened
        bx0, by0 = max(min(int(x0), xs[0]) - margin, 0), max(min(int(y0), ys[0]) - margin, 0)
        bx1, by1 = min(max(int(np.ceil(x1)), xs[-1] + 1) + margin, w), min(max(int(np.ceil(y1)), ys[-1] + 1) + margin, h)
        p = soft[i, by0:by1, bx0:bx1].astype(np.float32) * np.float32(1 / 255)
        q = _refined(image[by0:by1, bx0:bx1], p, 0.5, r)
        new_soft[i, by0:by1, bx0:bx1] = cv2.convertScaleAbs(q, alpha=255.0)
    return replace(seg, soft=new_soft, masks=new_soft >= 128)

// Boxes from the stored video frame to the pixels of the <video> element on screen.
//
// The API's boxes are [x1, y1, x2, y2] in pixels of the stored (unrotated) frame.
// Browsers show a video with rotation metadata turned: ``rotation`` is the job's
// video.rotation, degrees counter-clockwise as the container's display matrix
// says (a phone's portrait video is 90 or 270). The element letterboxes the
// picture (object-fit: contain), so the picture's rectangle inside the element
// is found first.

/** A stored-frame point (x, y) in the displayed (turned) frame, for a frame of width w and height h. */
export function rotatePoint(x, y, w, h, rotation) {
  switch (((rotation % 360) + 360) % 360) {
    case 90:
      return [y, w - x];
    case 180:
      return [w - x, h - y];
    case 270:
      return [h - y, x];
    default:
      return [x, y];
  }
}

/** The rectangle the picture takes inside an element of elementWidth x elementHeight (object-fit: contain). */
export function contentRect(elementWidth, elementHeight, pictureWidth, pictureHeight) {
  if (!pictureWidth || !pictureHeight || !elementWidth || !elementHeight) {
    return { x: 0, y: 0, width: elementWidth, height: elementHeight };
  }
  const scale = Math.min(elementWidth / pictureWidth, elementHeight / pictureHeight);
  const width = pictureWidth * scale;
  const height = pictureHeight * scale;
  return { x: (elementWidth - width) / 2, y: (elementHeight - height) / 2, width, height };
}

/**
 * A mapping from stored-frame boxes to element pixels.
 * @param stored {width, height, rotation}: the job's video (stored size, rotation)
 * @param shown {videoWidth, videoHeight, clientWidth, clientHeight}: the <video> element
 */
export function boxMapper(stored, shown) {
  let rotation = ((Number(stored.rotation) || 0) % 360 + 360) % 360;
  const w = stored.width || shown.videoWidth;
  const h = stored.height || shown.videoHeight;
  // A browser that shows the video unturned reports the stored size for a quarter turn.
  if ((rotation === 90 || rotation === 270) && w !== h && shown.videoWidth === w && shown.videoHeight === h) {
    rotation = 0;
  }
  const turned = rotation === 90 || rotation === 270;
  const displayWidth = turned ? h : w;
  const displayHeight = turned ? w : h;
  const rect = contentRect(shown.clientWidth, shown.clientHeight, shown.videoWidth || displayWidth, shown.videoHeight || displayHeight);
  const sx = rect.width / displayWidth;
  const sy = rect.height / displayHeight;
  return (box) => {
    const [ax, ay] = rotatePoint(box[0], box[1], w, h, rotation);
    const [bx, by] = rotatePoint(box[2], box[3], w, h, rotation);
    return {
      x: rect.x + Math.min(ax, bx) * sx,
      y: rect.y + Math.min(ay, by) * sy,
      width: Math.abs(bx - ax) * sx,
      height: Math.abs(by - ay) * sy,
    };
  };
}

/** The inverse of rotatePoint: the stored-frame point shown at (x, y) of the turned frame. */
export function unrotatePoint(x, y, w, h, rotation) {
  switch (((rotation % 360) + 360) % 360) {
    case 90:
      return [w - y, x];
    case 180:
      return [w - x, h - y];
    case 270:
      return [y, h - x];
    default:
      return [x, y];
  }
}

/**
 * Points both ways between the stored frame and the element's pixels, as boxMapper maps boxes
 * (the analytics panel draws zones and lines with it):
 * toScreen([x, y]) -> [sx, sy]; toFrame([sx, sy]) -> [x, y], kept inside the frame.
 * Also answers ``picture`` (the rectangle the picture takes in the element), ``rotation``
 * (as shown) and ``size`` (the stored frame's width and height).
 */
export function pointMapper(stored, shown) {
  let rotation = ((Number(stored.rotation) || 0) % 360 + 360) % 360;
  const w = stored.width || shown.videoWidth;
  const h = stored.height || shown.videoHeight;
  if ((rotation === 90 || rotation === 270) && w !== h && shown.videoWidth === w && shown.videoHeight === h) {
    rotation = 0;
  }
  const turned = rotation === 90 || rotation === 270;
  const displayWidth = turned ? h : w;
  const displayHeight = turned ? w : h;
  const rect = contentRect(shown.clientWidth, shown.clientHeight, shown.videoWidth || displayWidth, shown.videoHeight || displayHeight);
  const sx = rect.width / displayWidth;
  const sy = rect.height / displayHeight;
  return {
    picture: rect,
    rotation,
    size: { width: w, height: h },
    toScreen([x, y]) {
      const [dx, dy] = rotatePoint(x, y, w, h, rotation);
      return [rect.x + dx * sx, rect.y + dy * sy];
    },
    toFrame([px, py]) {
      const dx = Math.min(displayWidth, Math.max(0, (px - rect.x) / sx));
      const dy = Math.min(displayHeight, Math.max(0, (py - rect.y) / sy));
      return unrotatePoint(dx, dy, w, h, rotation);
    },
  };
}

"""Camera device: a source of frames (device index, video file, image folder) read through OpenCV.

`driver.OpenCvCamera` and `CaptureWorker` for production; `simulator` makes synthetic clips that the
same driver plays as a camera; `face_finder` and `landmarks` locate and measure a face in a frame.
"""
